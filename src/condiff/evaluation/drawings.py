"""Drawings of held-out Nouns in the styles people draw, to measure whether sketch2img obeys a drawing.

Each style turns a Noun into what a person would hand in: strokes on paper at DRAWING_SIZE px, read by
the model through the same path as a user's file (the sketch encoder's `encode_input`).

- "outlines": every colour region's outline with a thin pen: the style of the training sketches.
- "simple": only the outlines of the body, the head and the glasses (their holes too), thin pen.
- "wobbly": the simple outlines by an unsteady hand with a thick pen.
- "inverted": the simple outlines, white on black.
Only "outlines" resembles what the model was trained on; the others are styles it never saw.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from condiff.conditions.sketch import foreground, region_outlines
from condiff.data.nouns import NounsDataset
from condiff.evaluation.held_out import MIRRORED
from condiff.steering.silhouette import FIGURE_CONTRAST

STYLES = ("outlines", "simple", "wobbly", "inverted")
UNSEEN_STYLES = ("simple", "wobbly", "inverted")  # never used in training
SCALE = 8  # drawing pixels per Noun pixel
DRAWING_SIZE = 32 * SCALE
SIMPLE_PARTS = ("body", "head", "glasses")
THIN_PEN, THICK_PEN = 2, 7  # stroke widths in drawing pixels
WOBBLE = 3.0  # drawing pixels: how far an unsteady hand strays from the outline


def held_out_masks(num: int, seed: int, kinds: tuple[str, ...] = SIMPLE_PARTS) -> dict[str, np.ndarray]:
    """{part: (num, 32, 32) bool} for the Nouns of `held_out.held_out_nouns(num, seed)`, mirrored as
    those images are."""
    dataset = NounsDataset(num, seed=seed)
    nouns = [dataset.noun(i) for i in range(num)]
    masks = {}
    for kind in kinds:
        part = dataset.art.part_masks(nouns, kind)
        part[MIRRORED] = part[MIRRORED, :, ::-1]
        masks[kind] = part
    return masks


def drawings(style: str, images: torch.Tensor, masks: dict[str, np.ndarray], seed: int = 0) -> list[Image.Image]:
    """One drawing (an 8-bit gray PIL image) per Noun: `images` (N, 3, 32, 32) in [-1, 1] and their part
    `masks` (held_out_masks)."""
    rng = np.random.default_rng(seed)
    drawn = []
    for i in range(len(images)):
        if style == "outlines":
            ink = outline_strokes(images[i])
        else:
            ink = part_strokes([masks[kind][i] for kind in SIMPLE_PARTS], rng, wobbly=style == "wobbly")
        paper = np.where(ink, 0, 255).astype(np.uint8)
        drawn.append(Image.fromarray(255 - paper if style == "inverted" else paper))
    return drawn


def outline_strokes(image: torch.Tensor, threshold: float = 0.05) -> np.ndarray:
    """(SCALE * H, SCALE * W) bool for an image (3, H, W) (DRAWING_SIZE for a Noun): a thin line along every
    boundary between colour regions (`clean_sketch` at `threshold`)."""
    import cv2

    big = torch.nn.functional.interpolate(image[None].float(), scale_factor=SCALE, mode="nearest")
    lines = clean_sketch(big, threshold)[0, 0].numpy().astype(np.uint8)
    return cv2.dilate(lines, np.ones((THIN_PEN, THIN_PEN), np.uint8)) > 0


def clean_sketch(images: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """The sketch of a Noun without training augmentations: its colour-region outlines."""
    return region_outlines(images, threshold)


def part_strokes(masks: list[np.ndarray], rng: np.random.Generator, wobbly: bool) -> np.ndarray:
    """(DRAWING_SIZE, DRAWING_SIZE) bool: the outline of each part's silhouette and of its holes."""
    import cv2

    canvas = np.zeros((DRAWING_SIZE, DRAWING_SIZE), np.uint8)
    for mask in masks:
        big = np.kron(mask.astype(np.uint8), np.ones((SCALE, SCALE), np.uint8))
        contours, _ = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            points = contour[:, 0, :].astype(np.float64)
            if wobbly:
                points = points + smooth_noise(len(points), rng)
            cv2.polylines(canvas, [np.rint(points).astype(np.int32)], True, 1, THICK_PEN if wobbly else THIN_PEN)
    return canvas > 0


def smooth_noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) offsets that drift slowly along a closed outline, about WOBBLE pixels in size."""
    noise = rng.normal(0.0, 1.0, (count, 2))
    width = max(1, min(count, 25))
    kernel = np.ones(width) / width
    wrapped = np.concatenate([noise[-width:], noise, noise[:width]])
    smooth = np.stack([np.convolve(wrapped[:, axis], kernel, mode="same")[width:-width] for axis in (0, 1)], axis=1)
    return smooth / max(float(smooth.std()), 1e-6) * WOBBLE


def silhouette_iou(outputs: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean intersection over union of the outputs' and the true Nouns' foreground silhouettes."""
    return mask_iou(foreground(outputs, FIGURE_CONTRAST), foreground(truth, FIGURE_CONTRAST))


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean intersection over union of two sets of (N, H, W) bool masks."""
    union = (a | b).sum(dim=(1, 2)).clamp(min=1)
    return float(((a & b).sum(dim=(1, 2)) / union).mean())
