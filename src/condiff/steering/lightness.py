"""Lightness steering: the output keeps the lightness its condition fixes (grayscale hands a `KeepLuma`
step). Its lightness also limits a palette snap to colours of that gray level (`Step.lightness`); then each
finished pixel takes the given gray's luma (`keep_luma`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.steering.base import SteeringContext, SteeringOption, Step

if TYPE_CHECKING:
    import torch

OPTION = SteeringOption("lightness", ("auto", "off"), "auto keeps the lightness a condition fixes (colorize's "
                        "gray input) in the output; off leaves the model's own")


class KeepLuma(Step):
    def __init__(self, gray: torch.Tensor) -> None:
        """`gray`: (N, 1, H, W) in [-1, 1], the lightness of each output."""
        self.lightness = gray

    def finish(self, images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
        return keep_luma(images, self.lightness, snapped=context.palette is not None)


def keep_luma(images: torch.Tensor, gray: torch.Tensor, snapped: bool = False) -> torch.Tensor:
    """(N, 3, H, W) images and (N, 1, H, W) grayscale, both in [-1, 1] -> the images with the gray's
    luma. Luma weights sum to 1, so adding one value to R, G and B moves luma by exactly that value.

    `snapped`: the images were snapped to the palette with only colours of the gray's level competing
    (condiff.palette.nearest_colors). A pixel that got such a colour keeps it exactly; where the palette has
    no colour of that lightness, the pixel takes the gray's luma and leaves the palette."""
    import torch

    from condiff.images import luma
    from condiff.palette import on_gray_level

    gray = gray.to(images)
    lightened = (images + (gray - luma(images))).clamp(-1, 1)
    if not snapped:
        return lightened
    return torch.where(on_gray_level(images, gray), images, lightened)
