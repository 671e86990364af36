"""The `grayscale` condition: the image's luma, for colourising.

Luma uses the ITU-R BT.601 weights that PIL's "L" mode uses (`base.luma`). The weights sum to one, so
a grey pixel keeps its value and a greyscale input gives exactly the channel of its RGB version.

With `level_features: K`, 2K more channels describe each pixel's 8-bit gray level by sines and cosines
of periods 4, 8, ... 2^(K+1) levels (Fourier features, arxiv 2006.10739). In pixel art each part has its
own gray rendering, so the colour is a lookup from the exact gray level, a function that jumps between
neighbouring levels. From luma alone, a network learns such a function slowly (it learns smooth
functions of its input first); from these features, levels one apart already differ by a quarter turn.
The levels are rounded first, so a user's 8-bit gray image gives exactly the training features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder, check_resize, prepare_input
from condiff.conditions.registry import register_condition
from condiff.images import luma
from condiff.steering.lightness import KeepLuma

MAX_LEVEL_FEATURES = 7  # periods up to 256 levels: the whole 8-bit range


@register_condition("grayscale")
class GrayscaleCondition(ConditionEncoder):
    """Luma in [-1, 1], then the level features. `resize` is the filter for users' images: bicubic,
    since they are usually photos."""

    channels = 1
    luma_channel = 0

    @register_to_config
    def __init__(self, resize: str = "bicubic", level_features: int = 0) -> None:
        check_resize(resize)
        if isinstance(level_features, bool) or not isinstance(level_features, int) \
                or not 0 <= level_features <= MAX_LEVEL_FEATURES:
            raise ValueError(f"grayscale level_features must be a whole number from 0 to {MAX_LEVEL_FEATURES}, "
                             f"got {level_features!r}")

    @property
    def num_channels(self) -> int:
        return 1 + 2 * self.config.level_features

    def to_channels(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) luma in [-1, 1] -> the encoder's channels: the luma, then its level features."""
        count = self.config.level_features
        if count == 0:
            return gray
        levels = ((gray + 1) * 127.5).round()
        periods = 2.0 ** torch.arange(2, count + 2, dtype=gray.dtype, device=gray.device)
        phases = 2 * math.pi * levels / periods.view(1, -1, 1, 1)
        return torch.cat([gray, phases.sin(), phases.cos()], dim=1)

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_channels(luma(images))

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        return self.to_channels(luma(prepare_input(image, resolution, self.config.resize)))

    def panels(self, channels: torch.Tensor) -> list[torch.Tensor]:
        """`condiff encode` shows the luma only: the level features are a function of it."""
        return [channels[:1]]

    def steering(self, channels: torch.Tensor, modes: Mapping[str, str]) -> list:
        """The output keeps the gray input's lightness (condiff.steering.lightness), unless `lightness` is off."""
        return [KeepLuma(channels[:, :1])] if modes["lightness"] == "auto" else []

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor,
                    truth: torch.Tensor | None = None) -> torch.Tensor:
        """The squared error of the prediction's luma against the gray input (which the truth meets)."""
        return (luma(predicted) - channels[:, :1]).pow(2).mean(dim=(1, 2, 3))
