"""Colorization keeps the input's own lightness and takes only colour from the model.

At the model's resolution, each output pixel is shifted equally in R, G and B until its luma is the
grayscale the model was given (`keep_luma`). At full resolution the output is enlarged to the
input's size and converted to Lab; its colour channels (a, b) are combined with the lightness (L) of
the input itself, so every edge and detail is exactly the input's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from condiff.images import to_rgb


def keep_luma(images, gray):
    """(N, 3, H, W) images and (N, 1, H, W) grayscale, both in [-1, 1] -> the images with the gray's
    luma. Luma weights sum to 1, so adding one value to R, G and B moves luma by exactly that value."""
    from condiff.conditions.grayscale import luma

    return (images + (gray.to(images) - luma(images))).clamp(-1, 1)


def recombine_luminance(source: Image.Image, colour: Image.Image) -> Image.Image:
    """`source`'s lightness at its own size with `colour`'s chroma (bicubic-enlarged), via Lab."""
    from skimage.color import lab2rgb, rgb2lab

    source_rgb = np.asarray(to_rgb(source), dtype=np.float64) / 255.0
    height, width = source_rgb.shape[:2]
    colour_big = np.asarray(to_rgb(colour).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    lab = rgb2lab(colour_big)
    lab[..., 0] = rgb2lab(source_rgb)[..., 0]
    rgb = np.clip(lab2rgb(lab), 0.0, 1.0)
    return Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8))
