"""Pixel-art aware preprocessing: any PIL image -> square uint8 RGB array at the training resolution.

Nearest-neighbour resizing is the default because interpolating pixel art invents colours that are
not in its palette. Modes are converted by `condiff.images.to_rgb` (16-bit scaled, alpha composited).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from condiff.images import to_rgb


def prepare_image(
    image: Image.Image,
    resolution: int,
    resize: str = "nearest",
    center_crop: bool = True,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Return a (resolution, resolution, 3) uint8 array.

    With `center_crop` the shorter side is scaled to `resolution` and the centre is cut out (aspect
    ratio kept); without it the image is squeezed to a square.
    """
    image = to_rgb(image, background=tuple(background))
    resample = Image.Resampling[resize.upper()]  # the filters of config.RESIZE_FILTERS are PIL's, by name
    width, height = image.size
    if center_crop:
        scale = resolution / min(width, height)
        new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
        if new_size != image.size:
            image = image.resize(new_size, resample=resample)
        left = (image.width - resolution) // 2
        top = (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    elif image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), resample=resample)
    return np.asarray(image, dtype=np.uint8)


def resize_array(images: np.ndarray, resolution: int, resize: str = "nearest") -> np.ndarray:
    """Resize a (N, H, W, 3) uint8 batch of square images to `resolution`."""
    if images.shape[1] == resolution:
        return images
    return np.stack([prepare_image(Image.fromarray(image), resolution, resize) for image in images])
