"""The `inpaint` condition: which pixels to fill, and the image with those pixels blanked out.

Four channels: a mask (+1 = hole to fill, -1 = keep) then the RGB image with its holes set to 0, the
model's mid-grey, so the model cannot see what was there. Training holes are random rectangles; a
user marks holes by making them transparent in an RGBA (or LA, or palette-with-transparency) image.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder, prepare_input
from condiff.conditions.registry import register_condition
from condiff.data.preprocess import prepare_image
from condiff.images import has_transparency

OPAQUE_ENOUGH = 128  # alpha below this (out of 255) makes a pixel part of the hole


def random_boxes(count: int, height: int, width: int, min_size: float, max_size: float) -> torch.Tensor:
    """(count, 1, height, width) bool: one axis-aligned rectangle per sample, each side a uniform fraction
    in [min_size, max_size] of the image side, placed uniformly. Drawn from torch's global (CPU) RNG."""
    draws = torch.rand(count, 4)
    sides = min_size + (max_size - min_size) * draws[:, :2]
    box_h = (sides[:, 0] * height).round().clamp(1, height).long()
    box_w = (sides[:, 1] * width).round().clamp(1, width).long()
    top = (draws[:, 2] * (height - box_h + 1)).long().clamp(max=height - box_h)
    left = (draws[:, 3] * (width - box_w + 1)).long().clamp(max=width - box_w)
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def mask_and_masked(images: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """The four condition channels from (N, 3, H, W) images and (N, 1, H, W) bool holes."""
    holes = holes.to(images.device)
    mask = holes.to(images.dtype) * 2.0 - 1.0
    return torch.cat([mask, images.masked_fill(holes, 0.0)], dim=1)


def transparent_pixels(image: Image.Image, resolution: int) -> torch.Tensor:
    """(1, 1, res, res) bool: where the image is (mostly) transparent, cut and scaled like the image."""
    if not has_transparency(image):
        return torch.zeros(1, 1, resolution, resolution, dtype=torch.bool)
    alpha = image.convert("RGBA").getchannel("A")
    alpha = prepare_image(alpha, resolution, resize="nearest", center_crop=True)[..., 0]
    return torch.from_numpy(np.ascontiguousarray(alpha < OPAQUE_ENOUGH))[None, None]


@register_condition("inpaint")
class InpaintCondition(ConditionEncoder):
    """Mask and masked image; training holes are rectangles whose sides are a fraction in
    [`min_size`, `max_size`] of the image side."""

    channels = 4

    @register_to_config
    def __init__(self, min_size: float = 0.25, max_size: float = 0.6) -> None:
        if not 0.0 < min_size <= max_size <= 1.0:
            raise ValueError(f"inpaint hole sizes need 0 < min_size <= max_size <= 1, got {min_size} and {max_size}")

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        count, _, height, width = images.shape
        holes = random_boxes(count, height, width, self.config.min_size, self.config.max_size)
        return mask_and_masked(images, holes)

    def panels(self, channels: torch.Tensor) -> list[torch.Tensor]:
        """The mask in gray beside the masked image in colour."""
        return [channels[:1], channels[1:]]

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        """Transparent pixels (alpha < 128) of the user's image are the hole; an image without
        transparency has no hole. Resized with nearest, so hole edges stay sharp."""
        return mask_and_masked(prepare_input(image, resolution, "nearest"), transparent_pixels(image, resolution))
