"""The `lowres` condition (super-resolution): the image at 1/`factor` of its size, shown at full size.

Training images are area-averaged down, as a camera or a careful downscale would, then blown back up
with nearest so every low-res pixel becomes a factor x factor block aligned with the output. A user's
small image goes through the same two steps, so any size works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder, prepare_input
from condiff.conditions.registry import register_condition
from condiff.config import RANGES

MAX_FACTOR = int(RANGES["data.resolution"].high)  # a larger factor leaves any image one pixel


def low_size(size: int, factor: int) -> int:
    # Rounded up, so a size that the factor does not divide loses no border.
    return math.ceil(size / factor)


@register_condition("lowres")
class LowResCondition(ConditionEncoder):
    """The RGB image downsampled by `factor` (area) and upsampled back (nearest), in [-1, 1]."""

    channels = 3

    @register_to_config
    def __init__(self, factor: int = 4) -> None:
        if not 1 <= factor <= MAX_FACTOR:
            raise ValueError(f"lowres factor must be a whole number from 1 to {MAX_FACTOR} (the largest "
                             f"data.resolution), got {factor}")

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        factor = self.config.factor
        small = F.interpolate(images, size=(low_size(height, factor), low_size(width, factor)), mode="area")
        return F.interpolate(small, size=(height, width), mode="nearest")

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        # "box" is PIL's area filter, the same averaging the training images get.
        small = prepare_input(image, low_size(resolution, self.config.factor), "box")
        return F.interpolate(small, size=(resolution, resolution), mode="nearest")
