"""The held-out Nouns every evaluation measures on: rendered with seeds training never uses (data.seed 0).

Half of them are shown mirrored (MIRRORED), as training's random_flip shows half of its Nouns. Their part
masks, mirrored the same way, are `condiff.evaluation.drawings.held_out_masks`.
"""

from __future__ import annotations

import torch

from condiff.data.nouns import NounsDataset
from condiff.images import to_model_tensor

# The reference set, the inputs, and other Nouns.
REFERENCE_SEED, INPUT_SEED, OTHER_SEED = 1001, 1002, 1003
MIRRORED = slice(1, None, 2)  # the held-out Nouns shown mirrored, as training's random_flip shows half of them


def held_out_nouns(num: int, seed: int, resolution: int = 32) -> torch.Tensor:
    """`num` rendered Nouns in [-1, 1], those at MIRRORED mirrored."""
    dataset = NounsDataset(num, seed=seed)
    images = to_model_tensor(dataset.art.render_batch([dataset.noun(i) for i in range(num)]))
    images[MIRRORED] = images[MIRRORED].flip(-1)
    if resolution != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="nearest-exact")
    return images


def held_out_labels(num: int, seed: int) -> torch.Tensor:
    """The (num, 5) part labels of held_out_nouns(num, seed), in PART_KINDS order (mirroring keeps them)."""
    dataset = NounsDataset(num, seed=seed)
    return torch.tensor([dataset.noun(i).labels() for i in range(num)])
