"""Drawings of any images (a user's own, not only Nouns), to measure whether sketch2img obeys a drawing.

Each style turns an image (3, R, R) into what a person would hand in: black strokes on white paper at
SCALE * R px (an 8-bit gray PIL image), which the model reads through the same path as a user's file (the
sketch encoder's `encode_input`). Drawn from the image alone, so they need no part masks (Nouns have them:
condiff.evaluation.drawings).

- "outlines": every colour region's outline with a thin pen: the style of the training sketches.
- "wobbly": the figure's outline (against the background) and only the strong edges inside it (colours
  at least STRONG apart), by an unsteady hand with a thick pen.
- "sparse": a few strokes: the figure's outline with gaps, and a random SPARSE_KEEP of the lines inside it.
Only "outlines" resembles what the model was trained on; the others are styles it never saw. Lengths
are given in pixels at 32 px, as the sketch condition's, and scale with R.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from condiff.conditions.sketch import REFERENCE_SIZE, foreground, interior, region_outlines
from condiff.evaluation.drawings import SCALE, THICK_PEN, THIN_PEN, outline_strokes, smooth_noise
from condiff.steering.silhouette import FIGURE_CONTRAST

STYLES = ("outlines", "wobbly", "sparse")
UNSEEN_STYLES = ("wobbly", "sparse")  # never used in training
STRONG = 0.2  # a fraction of the range: interior edges whose colours differ this much are the ones "wobbly" draws
SPARSE_KEEP = 0.5  # the share of interior lines (connected strokes) a sparse drawing keeps
STROKE_LENGTH = (6.0, 16.0)  # pixels at 32 px: the sparse outline's strokes, drawn uniformly in this range
# Pixels at 32 px: the gaps between them, a pixel or two as a hurried hand leaves them: wide enough to show once
# read at R px, and up to the gap the sketch encoder's fill still closes (FILL_GAP), so the figure stays one shape.
GAP_LENGTH = (1.0, 2.0)


def own_drawings(style: str, images: torch.Tensor, seed: int = 0, threshold: float = 0.05) -> list[Image.Image]:
    """One drawing (an 8-bit gray PIL image, SCALE times the images' size) per image of `images`
    (N, 3, R, R) in [-1, 1]. `threshold`: colours this close count as one region (the sketch encoder's)."""
    if style not in STYLES:
        raise ValueError(f"unknown drawing style {style!r}; the styles are {', '.join(STYLES)}")
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.where(strokes(style, image, rng, threshold), 0, 255).astype(np.uint8))
            for image in images]


def strokes(style: str, image: torch.Tensor, rng: np.random.Generator, threshold: float) -> np.ndarray:
    """(SCALE * R, SCALE * R) bool: the ink of one drawing of `image` (3, R, R)."""
    if style == "outlines":
        return outline_strokes(image, threshold)
    canvas = np.zeros((SCALE * image.shape[-2], SCALE * image.shape[-1]), np.uint8)
    outline = figure_outline(foreground(image[None], FIGURE_CONTRAST)[0].numpy())
    (wobbly_strokes if style == "wobbly" else sparse_strokes)(canvas, outline, image, rng, threshold)
    return canvas > 0


def wobbly_strokes(canvas: np.ndarray, outline: list, image: torch.Tensor, rng: np.random.Generator,
                   threshold: float) -> None:
    """Draws the figure's `outline` and the image's strong inner edges, unsteady and thick, on `canvas`."""
    import cv2

    curves = outline + [(curve, True) for curve in line_contours(figure_interior(image, STRONG))]
    for (_, closed), points in zip(curves, unsteady([points for points, _ in curves], rng), strict=True):
        cv2.polylines(canvas, [np.rint(points).astype(np.int32)], closed, 1, THICK_PEN)


def sparse_strokes(canvas: np.ndarray, outline: list, image: torch.Tensor, rng: np.random.Generator,
                   threshold: float) -> None:
    """Draws the figure's `outline` with gaps, and a random SPARSE_KEEP of the connected lines inside the
    figure (region outlines at `threshold`), with a thin pen on `canvas`."""
    import cv2
    from scipy import ndimage

    pieces = [piece for curve, closed in outline for piece in with_gaps(curve, closed, rng, image.shape[-1])]
    cv2.polylines(canvas, [np.rint(piece).astype(np.int32) for piece in pieces], False, 1, THIN_PEN)
    components, count = ndimage.label(figure_interior(image, threshold), structure=np.ones((3, 3)))
    kept = np.isin(components, 1 + np.flatnonzero(rng.random(count) < SPARSE_KEEP))
    cv2.polylines(canvas, [np.rint(curve).astype(np.int32) for curve in line_contours(kept)], True, 1, THIN_PEN)


def figure_interior(image: torch.Tensor, threshold: float) -> np.ndarray:
    """(R, R) bool: the colour-region outlines at `threshold` that lie inside the figure (not its outline)."""
    return interior(region_outlines(image[None], threshold), image[None], FIGURE_CONTRAST)[0, 0].numpy()


def figure_outline(mask: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """The outline of a (R, R) bool figure and of its holes, as (K, 2) x, y points in drawing pixels, each
    with whether it is closed. Where the frame cuts the figure, nobody draws the frame: an outline that runs
    along it is split into the open curves off it."""
    import cv2

    big = np.kron(mask.astype(np.uint8), np.ones((SCALE, SCALE), np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    height, width = big.shape
    curves = []
    for contour in contours:
        points = contour[:, 0, :]
        frame = (points[:, 0] == 0) | (points[:, 0] == width - 1) | (points[:, 1] == 0) | (points[:, 1] == height - 1)
        if not frame.any():
            curves.append((points.astype(np.float64), True))
            continue
        start = int(np.flatnonzero(frame)[0])  # begin on the frame, so that no run wraps around
        points, frame = np.roll(points, -start, axis=0), np.roll(frame, -start)
        breaks = np.flatnonzero(np.diff(frame.astype(np.int8))) + 1
        curves += [(run.astype(np.float64), False) for run, on in zip(np.split(points, breaks),
                                                                          np.split(frame, breaks), strict=True)
                   if not on[0] and len(run) >= 2]
    return curves


def line_contours(lines: np.ndarray) -> list[np.ndarray]:
    """(R, R) bool lines as (K, 2) x, y points in drawing pixels along their centre lines; an open line is
    traced there and back, as a closed polyline."""
    import cv2
    from skimage.morphology import skeletonize

    big = np.kron(lines.astype(np.uint8), np.ones((SCALE, SCALE), np.uint8))
    centre = skeletonize(big > 0).astype(np.uint8)
    contours, _ = cv2.findContours(centre, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return [contour[:, 0, :].astype(np.float64) for contour in contours]


def unsteady(curves: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The curves as an unsteady hand draws them: each strays from its points by a slowly drifting offset
    (drawings.smooth_noise). A point traced again (an open line's way back, a ring's other side) gets the
    offset of its first visit, so a line is one stroke, not two."""
    first: dict[tuple[float, float], np.ndarray] = {}
    drawn = []
    for points in curves:
        offsets = smooth_noise(len(points), rng)
        for i, point in enumerate(map(tuple, points)):
            offsets[i] = first.setdefault(point, offsets[i])
        drawn.append(points + offsets)
    return drawn


def with_gaps(curve: np.ndarray, closed: bool, rng: np.random.Generator, resolution: int) -> list[np.ndarray]:
    """A curve as strokes of STROKE_LENGTH with gaps of GAP_LENGTH between them (a closed one from a random
    start)."""
    unit = SCALE * resolution / REFERENCE_SIZE  # drawing pixels per pixel at 32 px
    points = np.roll(curve, -int(rng.integers(len(curve))), axis=0) if closed else curve
    pieces, start = [], 0
    while start < len(points):
        end = start + max(2, round(rng.uniform(*STROKE_LENGTH) * unit))
        pieces.append(points[start:end])
        start = end + round(rng.uniform(*GAP_LENGTH) * unit)
    return [piece for piece in pieces if len(piece) >= 2]
