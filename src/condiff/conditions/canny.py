"""The `canny` condition: OpenCV's Canny edges of the luma, one channel, edges +1 on background -1.

Canny runs on the raw image at the training resolution, without the usual Gaussian blur: the Nouns are
32 px pixel art whose hard colour edges are exactly what we want, and blurring would merge them.
OpenCV is imported when first used, so importing the condition stays cheap.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder, check_resize, prepare_input
from condiff.conditions.registry import register_condition
from condiff.images import luma, to_uint8

MAX_GRADIENT = 2040  # OpenCV's Canny thresholds an L1 gradient of 8-bit luma: at most 2 * 4 * 255


def canny_edges(images: torch.Tensor, low_threshold: int, high_threshold: int) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W): +1 on edges, -1 elsewhere, on the input's device."""
    import cv2

    grays = to_uint8(luma(images.detach().float().cpu()))[..., 0]  # (N, H, W) uint8, what OpenCV's Canny takes
    edges = np.stack([cv2.Canny(gray, low_threshold, high_threshold) for gray in grays])
    mask = torch.from_numpy(edges > 0)[:, None].to(images.device)
    return mask.to(images.dtype) * 2.0 - 1.0


@register_condition("canny")
class CannyCondition(ConditionEncoder):
    """Canny edges; `low_threshold`/`high_threshold` are Canny's hysteresis thresholds on 0..255 luma
    gradients, and `resize` is the filter for users' images (bicubic, as they are usually photos)."""

    channels = 1

    @register_to_config
    def __init__(self, low_threshold: int = 100, high_threshold: int = 200, resize: str = "bicubic") -> None:
        if not 0 <= low_threshold <= high_threshold <= MAX_GRADIENT:
            raise ValueError(f"canny thresholds need 0 <= low_threshold <= high_threshold <= {MAX_GRADIENT} "
                             f"(Canny's L1 gradient of 8-bit luma is at most {MAX_GRADIENT}), "
                             f"got {low_threshold} and {high_threshold}")
        check_resize(resize)

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        return canny_edges(images, self.config.low_threshold, self.config.high_threshold)

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        return self.encode_training(prepare_input(image, resolution, self.config.resize))
