"""Silhouette steering: the output's figure stays where the condition draws it.

Some conditions fix where the figure is (sketch with `fill`: the shapes the drawing's outlines enclose) and
hand the pipeline a `KeepSilhouette` step. A small model reads thin lines only loosely and falls back on the
figures it knows best, so the step projects each step's predicted clean image onto images with that
silhouette (`keep_silhouette`), much as the palette step pulls it toward the palette. The sampler's own
update carries the projection to the next step, so the model paints the figure it is given in its own
colours and details. The final snap to the palette keeps the silhouette too (`snap_keeping_silhouette`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.steering.base import SteeringContext, SteeringOption, Step

if TYPE_CHECKING:  # torch loads with the functions, so that `condiff --help` reads the modes without it
    import torch

OPTION = SteeringOption("silhouette", ("auto", "off"), "auto keeps the output's silhouette where the conditions "
                        "fix one (sketch with fill: the drawn shapes); off lets the model draw freely")
SILHOUETTE_MODES = OPTION.modes
FIGURE_CONTRAST = 0.1  # a fraction of the range: how unlike the background a pixel of the figure is
PUSH = 2.0  # a figure pixel too like the background moves this many times FIGURE_CONTRAST away from it


def figure_backgrounds(images: torch.Tensor, figure: torch.Tensor) -> torch.Tensor:
    """The background colours (N, 3) of images (N, 3, H, W): each one's median colour outside its figure
    (N, 1, H, W) bool; NaN for an image whose figure is everything."""
    return images.masked_fill(figure, float("nan")).flatten(2).nanmedian(dim=2).values


def figure_background(image: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """The background colour (3,) of one image (3, H, W): its median colour outside the figure `inside`."""
    return figure_backgrounds(image[None], inside[None, None])[0]


def reads_as_background(offset: torch.Tensor, contrast: float = FIGURE_CONTRAST, dim: int = 0) -> torch.Tensor:
    """Whether colours `offset` away from the background (channels along `dim`) are too close to it to
    count as figure: no channel differs by more than `contrast` of the range."""
    return offset.abs().amax(dim=dim) <= 2.0 * contrast


def keep_silhouette(images: torch.Tensor, figure: torch.Tensor, contrast: float = FIGURE_CONTRAST) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] made to have the silhouette `figure` (N, 1, H, W) bool: outside it,
    the background colour (the median there); inside it, a pixel whose largest channel difference to the
    background is at most `contrast` (a fraction of the range) moves along its own direction to PUSH times
    `contrast` from it, so that a palette snap keeps it unlike the background. Samples whose figure is
    empty or everything are returned unchanged."""
    import torch

    result = images.clone()
    target = 2.0 * contrast * PUSH
    for i, (image, inside) in enumerate(zip(images, figure[:, 0], strict=True)):
        if not inside.any() or inside.all():
            continue
        background = figure_background(image, inside)[:, None, None]
        kept = torch.where(inside, image, background)
        offset = kept - background
        distance = offset.abs().amax(dim=0, keepdim=True)
        too_close = inside & reads_as_background(offset, contrast)
        if too_close.any():
            far = inside & ~too_close
            # each pixel moves along its own difference; one with none, toward the figure's mean colour
            mean = image[:, far].mean(dim=1)[:, None, None] if far.any() else -background.sign()
            fallback = (mean - background) / (mean - background).abs().amax().clamp(min=1e-6)
            direction = torch.where(distance > 1e-3, offset / distance.clamp(min=1e-6), fallback)
            pushed = (background + target * direction).clamp(-1, 1)
            short = reads_as_background(pushed - background, contrast)  # the range ended: go the other way
            pushed = torch.where(short, (background - target * direction).clamp(-1, 1), pushed)
            kept = torch.where(too_close, pushed, kept)
        result[i] = kept
    return result


class KeepSilhouette(Step):
    """The step of the module's docstring for the silhouette `figure` (N, 1, H, W) bool."""

    def __init__(self, figure: torch.Tensor) -> None:
        self.figure = figure

    def on_prediction(self, x0: torch.Tensor, index: int, context: SteeringContext) -> torch.Tensor:
        return keep_silhouette(x0, self.figure.to(x0.device))

    def finish(self, images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
        if context.palette is None:
            return images
        return snap_keeping_silhouette(images, context.sampled, self.figure.cpu(), context.palette)


def snap_keeping_silhouette(snapped: torch.Tensor, images: torch.Tensor, figure: torch.Tensor,
                            palette: torch.Tensor, contrast: float = FIGURE_CONTRAST) -> torch.Tensor:
    """`snapped`: `images` (N, 3, H, W) snapped to `palette` (P, 3), both in [-1, 1]. Where that turned a
    pixel inside `figure` (N, 1, H, W) bool into the background's colour, or one as close to it as
    `contrast`, the pixel takes instead its nearest palette colour farther from the background (the
    median colour outside the figure). Samples whose figure is empty or everything are left as snapped."""
    from condiff.palette import nearest_colors

    result = snapped.clone()
    palette = palette.to(snapped)
    for i, inside in enumerate(figure[:, 0]):
        if not inside.any() or inside.all():
            continue
        background = figure_background(snapped[i], inside)
        too_close = inside & reads_as_background(snapped[i] - background[:, None, None], contrast)
        unlike = ~reads_as_background(palette - background, contrast, dim=1)
        if too_close.any() and unlike.any():
            pixels = images[i][:, too_close].to(snapped)[None, :, None, :]  # (1, 3, 1, K)
            result[i][:, too_close] = nearest_colors(pixels, palette[unlike])[0, :, 0, :]
    return result
