"""The `grayscale` condition: the image's luma, one channel, for colourising.

Luma uses the ITU-R BT.601 weights that PIL's "L" mode uses (`base.luma`). The weights sum to one, so
a grey pixel keeps its value and a greyscale input gives exactly the channel of its RGB version.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder, check_resize, luma, prepare_input
from condiff.conditions.registry import register_condition


@register_condition("grayscale")
class GrayscaleCondition(ConditionEncoder):
    """Luma in [-1, 1]. `resize` is the filter for users' images: bicubic, since they are usually photos."""

    channels = 1

    @register_to_config
    def __init__(self, resize: str = "bicubic") -> None:
        check_resize(resize)

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        return luma(images)

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        return luma(prepare_input(image, resolution, self.config.resize))

    def known_luma(self, channels: torch.Tensor) -> torch.Tensor:
        return channels

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """The squared error of the prediction's luma against the gray input."""
        return (luma(predicted) - channels).pow(2).mean(dim=(1, 2, 3))
