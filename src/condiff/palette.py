"""Palettes: the colours a pixel-art dataset is drawn with, found once, saved with the model, used when sampling.

Every pixel of a real Noun (or of most sprites and icons) is one of a few hundred colours on flat areas.
A diffusion model gets the shapes right and leaves each pixel a little off; here is what brings it back.

- Finding, at training start: `find_palette`, and `palette_config`, the settings the model's Denoiser saves.
- Sampling: snapping to the nearest palette colours (`nearest_colors`, `snap_to_palette`), which the palette
  steering step uses (condiff.steering.palette).
- Lightness fixed by a condition (colorize): only colours of that 8-bit gray level compete, and among them
  the choice weighs the model's colour against how common each colour is (`nearest_colors`): on
  Nouns, a gray level alone nearly names its colour, and the frequencies say which.
- Measuring: `on_palette_share`, the share of pixels exactly on the palette.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from condiff.errors import CondiffError
from condiff.rules import HEX_COLOR

if TYPE_CHECKING:
    import torch

SAMPLE_IMAGES = 4096  # images read to find a palette: enough for all but the rarest Nouns colours
MAX_PALETTE = 4096  # colours a saved palette may hold (a model folder's bound)
# How far (in [-1, 1]) the model's colour is taken to stray. benchmarks/bench_colorize.py, 300 held-out Nouns:
# on the colorize model shipped before issue 41, whose colours were poor, the larger the better (1000: the
# frequencies alone chose); on the chroma model shipped now, 0.5 is best (PSNR 54.5 dB against 43.3 at 1000,
# glasses exact 90 % against 87 %, bodies 93 % against 95 %, FD 283 against 290).
COLOR_SPREAD = 0.5
_CHUNK = 65536  # pixels compared with the palette at once: bounds memory at 65536 x colours floats


# --- finding ------------------------------------------------------------------------------------


@dataclass
class FoundPalette:
    colors: np.ndarray | None  # (P, 3) uint8, or None: no palette
    note: str  # one line for the training log
    frequencies: np.ndarray | None = None  # (P,) each colour's share of the sampled pixels


def find_palette(images: Iterable[np.ndarray], mode: str = "auto", size: int = 256) -> FoundPalette:
    """The palette of (H, W, 3) uint8 images: their exact colours when there are at most `size`, else
    (mode "kmeans") `size` k-means colours, else none. Mode "off" finds none."""
    if mode == "off":
        return FoundPalette(None, "no palette (data.palette: off)")
    pixels = np.concatenate([np.asarray(image, np.uint8).reshape(-1, 3) for image in images])
    unique, counts = np.unique(packed_colors(pixels), return_counts=True)
    count = len(unique)
    if count <= size:
        colors = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1).astype(np.uint8)
        return FoundPalette(colors, f"palette: the data's {count} exact colours", counts / counts.sum())
    if mode == "kmeans":
        colors = kmeans_palette(pixels, size)
        return FoundPalette(colors, f"palette: {len(colors)} k-means colours (the data has {count:,} colours, "
                                    f"more than data.palette_size {size})", shares_of(pixels, colors))
    return FoundPalette(None, f"no palette: the data has {count:,} colours, more than data.palette_size {size} "
                              "(set data.palette: kmeans for a k-means palette)")


def packed_colors(pixels) -> np.ndarray:
    """Colours (..., 3) of 8 bits each as one int64 each (0xRRGGBB), for counting and matching."""
    array = np.asarray(pixels, np.int64).reshape(-1, 3)
    return (array[:, 0] << 16) | (array[:, 1] << 8) | array[:, 2]


def shares_of(pixels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Each colour's share of (M, 3) uint8 pixels, each pixel counted for its nearest colour."""
    import torch

    nearest = torch.cdist(torch.as_tensor(pixels[:200_000], dtype=torch.float32),
                          torch.as_tensor(colors, dtype=torch.float32)).argmin(dim=1)
    counts = np.bincount(nearest.numpy(), minlength=len(colors))
    return counts / counts.sum()


def kmeans_palette(pixels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` colours that summarise (M, 3) uint8 pixels (OpenCV's k-means, k-means++ start)."""
    import cv2

    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(len(pixels), min(len(pixels), 200_000), replace=False)].astype(np.float32)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centers = cv2.kmeans(sample, size, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return np.unique(np.clip(np.rint(centers), 0, 255).astype(np.uint8), axis=0)


def palette_config(colors: np.ndarray | None, frequencies=None) -> dict:
    """A palette's saved settings (condiff.denoiser): `palette` ("#rrggbb" strings) and `palette_frequencies`
    (each colour's share of the pixels), None where absent."""
    return {"palette": None if colors is None else to_hex(colors),
            "palette_frequencies": None if frequencies is None else [round(float(share), 8) for share in frequencies]}


def to_hex(colors: np.ndarray) -> list[str]:
    """(P, 3) uint8 colours as the "#rrggbb" strings a model folder stores."""
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.asarray(colors, np.uint8).tolist()]


def from_hex(colors, where: str = "palette") -> np.ndarray:
    """Stored "#rrggbb" strings as (P, 3) uint8, or a one-line error naming `where`."""
    if (not isinstance(colors, list | tuple) or not 1 <= len(colors) <= MAX_PALETTE
            or not all(isinstance(c, str) and HEX_COLOR.match(c) for c in colors)):
        raise CondiffError(f'{where}: a palette is a list of 1 to {MAX_PALETTE} colours written "#rrggbb" '
                           '(lower-case hex)')
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], np.uint8)


# --- sampling -----------------------------------------------------------------------------------


def palette_tensor(colors: np.ndarray, device=None) -> torch.Tensor:
    """(P, 3) uint8 colours as (P, 3) floats in the model's range [-1, 1]."""
    import torch

    return torch.as_tensor(np.asarray(colors), dtype=torch.float32, device=device) / 127.5 - 1


def gray_levels(values: torch.Tensor) -> torch.Tensor:
    """Lightness in [-1, 1] as 8-bit gray levels (0..255, rounded half up): a gray file's own levels
    exactly, and the nearest level of an exact luma."""
    return ((values + 1) * 127.5 + 0.5).floor()


def color_gray_levels(colors: torch.Tensor) -> torch.Tensor:
    """8-bit colours given in [-1, 1], channels in dim 1 ((P, 3) or (N, 3, H, W)), as the gray level a
    gray file shows for each: PIL's "L" conversion in its own fixed-point weights (x/65536). Near a
    half level those round differently from the exact BT.601 luma ((0, 207, 35): 125.499 gives 125, PIL
    gives 126), about one colour in 2000."""
    rgb = ((colors + 1) * 127.5).round().long()
    weighted = rgb.select(1, 0) * 19595 + rgb.select(1, 1) * 38470 + rgb.select(1, 2) * 7471
    return ((weighted + 32768) >> 16).to(colors.dtype)


def nearest_colors(images: torch.Tensor, palette: torch.Tensor, luma_target: torch.Tensor | None = None,
                   frequencies: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] with every pixel replaced by its nearest palette colour (RGB
    distance). With `luma_target` (N, 1, H, W), only colours of the target's 8-bit gray level compete
    (`color_gray_levels`: the colours a gray file with that level can come from; a tolerance around the
    exact luma would let in colours of the next level), and with `frequencies` (P,) the most probable of them
    wins: the cost is distance^2 / (2 COLOR_SPREAD^2) - log frequency, the model's colour read as a guess
    about COLOR_SPREAD off. A pixel with no colour of its lightness gets the best colour of any lightness."""
    import torch

    palette = palette.to(images)
    flat = images.permute(0, 2, 3, 1).reshape(-1, 3)
    targets = None if luma_target is None else gray_levels(luma_target.permute(0, 2, 3, 1).reshape(-1).to(images))
    palette_levels = color_gray_levels(palette)
    prior = None if targets is None or frequencies is None else frequencies.to(images).clamp(min=1e-12).log()
    chosen = torch.empty(len(flat), dtype=torch.long, device=images.device)
    for start in range(0, len(flat), _CHUNK):
        cost = torch.cdist(flat[start:start + _CHUNK], palette).square()
        if prior is not None:
            cost = cost / (2 * COLOR_SPREAD**2) - prior[None]
        if targets is not None:  # far above any other cost: a colour of the wrong lightness loses
            cost = cost + 1e6 * (targets[start:start + _CHUNK, None] != palette_levels[None])
        chosen[start:start + _CHUNK] = cost.argmin(dim=1)
    n, _, h, w = images.shape
    return palette[chosen].reshape(n, h, w, 3).permute(0, 3, 1, 2).contiguous()


def snap_to_palette(images: torch.Tensor, palette: torch.Tensor, luma_target: torch.Tensor | None = None,
                    frequencies: torch.Tensor | None = None) -> torch.Tensor:
    """The finished images snapped exactly (nearest_colors). With `luma_target`, a pixel whose gray level
    no palette colour has is left as the model made it: no palette colour can keep its lightness, and
    the task (colorize) gives it that lightness itself."""
    snapped = nearest_colors(images, palette, luma_target, frequencies=frequencies)
    if luma_target is None:
        return snapped
    return snapped.where(on_gray_level(snapped, luma_target), images)


def on_gray_level(images: torch.Tensor, luma_target: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool: where the colour of `images` (N, 3, H, W), read as 8-bit, has the target's gray
    level in a gray file (color_gray_levels). Snapping with that target chooses such colours when it can."""
    return (color_gray_levels(images) == gray_levels(luma_target.to(images))[:, 0])[:, None]


# --- measuring ----------------------------------------------------------------------------------


def on_palette_share(images: np.ndarray, colors: np.ndarray) -> float:
    """The share of pixels of (N, H, W, 3) uint8 images whose colour is exactly a palette colour."""
    return float(np.isin(packed_colors(images), packed_colors(colors)).mean())
