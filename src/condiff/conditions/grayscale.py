"""The `grayscale` condition: the image's luma, one channel, for colourising.

Luma uses the ITU-R BT.601 weights that PIL's "L" mode uses. The weights sum to one, so luma is an
affine-invariant mix: it can be taken directly in the model's [-1, 1] range, and a grey pixel keeps
its value, so a greyscale input gives exactly the channel of its RGB version.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import register_condition
from condiff.config import RESIZE_FILTERS
from condiff.data.preprocess import prepare_image
from condiff.images import to_model_tensor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def luma(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W): BT.601 luma, in the same range as the input."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def check_resize(resize: str) -> None:
    if resize not in RESIZE_FILTERS:
        raise ValueError(f"unknown resize filter {resize!r}; choose one of {', '.join(RESIZE_FILTERS)}")


def prepare_input(image: Image.Image, resolution: int, resize: str) -> torch.Tensor:
    """A user's image -> (1, 3, res, res) in [-1, 1]: RGB, shorter side scaled, centre cut out."""
    return to_model_tensor(prepare_image(image, resolution, resize=resize, center_crop=True)[None])


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
