"""Full-resolution colorization: keep the input's own structure, take only colour from the model.

The model works at a small resolution. Its output is enlarged to the input's size and converted to
Lab; its colour channels (a, b) are combined with the lightness (L) of the input itself, so every
edge and detail is exactly the input's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from condiff.images import to_rgb


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
