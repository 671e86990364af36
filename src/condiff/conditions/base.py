"""The condition-encoder interface: a name, a channel count, and a function from images to channels.

An encoder turns a batch of clean training images into condition channels (`encode_training`, which
may be random, e.g. sketch jitter) and a user's image into the same channels (`encode_input`, which
normalises whatever the user brings). Channels are float in [-1, 1] and are concatenated to the noisy
image at the UNet input. All-zero channels mean "no condition" (condition dropout and classifier-free
guidance use them), so an encoder should not rely on an all-zero output carrying information.

Settings are recorded with diffusers' `register_to_config`, so a saved model knows exactly which
encoders, with which parameters, it was trained on.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin
from PIL import Image


class ConditionEncoder(ConfigMixin):
    config_name = "condition_config.json"
    name: ClassVar[str] = ""  # set by @register_condition
    channels: ClassVar[int] = 0  # an encoder whose count depends on its settings overrides `num_channels`

    @property
    def num_channels(self) -> int:
        return self.channels

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) clean images in [-1, 1] -> (N, num_channels, H, W) in [-1, 1].

        Randomness (augmentations) must come from torch's global RNG, which checkpoints restore.
        """
        raise NotImplementedError

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        """A user's image (any size and mode, EXIF already applied) -> (1, num_channels, res, res)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The name and the recorded settings: enough to rebuild the encoder."""
        settings = {k: v for k, v in self.config.items() if not k.startswith("_")}
        return {"name": self.name, **settings}
