"""The Nouns feature network: a small CNN that names the five parts of a Noun.

It is trained on rendered Nouns (scripts/train_feature_net.py) to predict the background, body,
accessory, head and glasses labels. Its penultimate layer is the feature space for Fréchet distance
and KID, as Inception's is for photographs: a space where what makes a Noun a Noun is spelt out. Its
part predictions also tell whether a sample shows parts it recognises with confidence.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from condiff.data.nouns import PART_KINDS
from condiff.errors import CondiffError

FEATURE_NET_DIR = Path(__file__).resolve().parent.parent / "models" / "nouns-features"


class NounsFeatureNet(ModelMixin, ConfigMixin):
    """(N, 3, 32, 32) in [-1, 1] -> features (N, feature_dim) and one logit vector per part kind."""

    @register_to_config
    def __init__(self, part_counts: tuple[int, ...] = (2, 30, 143, 254, 23), width: int = 32,
                 feature_dim: int = 128, resolution: int = 32) -> None:
        super().__init__()
        if len(part_counts) != len(PART_KINDS):
            raise ValueError(f"part_counts needs one count per part kind {PART_KINDS}, got {part_counts}")

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.SiLU())

        self.trunk = nn.Sequential(
            block(3, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2),
            block(4 * width, 4 * width, 2), nn.Flatten(),
            # Flattened, not pooled: where a part sits (glasses on the face) is part of what it is.
            nn.Linear(4 * width * (resolution // 8) ** 2, feature_dim), nn.SiLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(feature_dim, count) for count in part_counts)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.trunk(images)
        return features, [head(features) for head in self.heads]


def load_feature_net(folder: str | Path = FEATURE_NET_DIR) -> NounsFeatureNet:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CondiffError(f"the Nouns feature network is missing from {folder}; reinstall condiff or "
                           "train it with scripts/train_feature_net.py")
    return NounsFeatureNet.from_pretrained(folder).eval()


@torch.no_grad()
def extract(net: NounsFeatureNet, images: torch.Tensor,
            batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, D) and the most likely part per kind with its probability: labels and
    confidences, both (N, 5). Images are (N, 3, H, W) in [-1, 1], resized to the network's input."""
    resolution = net.config.resolution
    features, labels, confidences = [], [], []
    for batch in images.split(batch_size):
        batch = batch.float()
        if batch.shape[-1] != resolution:
            batch = torch.nn.functional.interpolate(batch, size=(resolution, resolution), mode="nearest-exact")
        batch_features, logits = net(batch.to(net.device))
        best = [part.softmax(dim=1).max(dim=1) for part in logits]
        features.append(batch_features.cpu())
        labels.append(torch.stack([b.indices for b in best], dim=1).cpu())
        confidences.append(torch.stack([b.values for b in best], dim=1).cpu())
    return torch.cat(features), torch.cat(labels), torch.cat(confidences)
