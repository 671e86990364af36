"""Metrics on image sets and image pairs. Images are float arrays or tensors in [-1, 1], (N, 3, H, W).

Set metrics (Fréchet distance, KID) compare feature distributions; pair metrics (PSNR, SSIM, luma
error, edge F1) compare each output with its reference; colourfulness and flat-area noise need no reference.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from condiff.images import to_uint8
from condiff.palette import color_gray_levels

PSNR_CAP = 100.0  # dB; identical images would give infinity, which JSON cannot hold


def _array(images) -> np.ndarray:
    return images.detach().cpu().double().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D): the FID formula."""
    a, b = _array(features_a), _array(features_b)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Features that never fire make the covariances singular; scipy warns, the result stays usable.
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():  # nudge both covariances, as FID code does
            offset = np.eye(len(cov_a)) * 1e-6
            root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    distance = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real)
    return float(max(distance, 0.0))


def kernel_inception_distance(features_a, features_b, subsets: int = 20, subset_size: int = 200,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel, averaged over
    random subsets; returns (mean, standard deviation). Unbiased, so near 0 (even below) for equal sets."""
    a, b = _array(features_a), _array(features_b)
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        k_xx, k_yy, k_xy = ((u @ v.T / dim + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
        off_diagonal = size * (size - 1)
        values.append((k_xx.sum() - np.trace(k_xx)) / off_diagonal + (k_yy.sum() - np.trace(k_yy)) / off_diagonal
                      - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def to_unit(images) -> np.ndarray:
    """[-1, 1] (N, 3, H, W) -> [0, 1] (N, H, W, 3) float64."""
    return np.clip((_array(images) + 1) / 2, 0, 1).transpose(0, 2, 3, 1)


def psnr(outputs, references) -> float:
    """Mean PSNR in dB over image pairs, each capped at PSNR_CAP."""
    out, ref = to_unit(outputs), to_unit(references)
    mse = ((out - ref) ** 2).reshape(len(out), -1).mean(1)
    with np.errstate(divide="ignore"):
        values = np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP)
    return float(values.mean())


def ssim(outputs, references) -> float:
    """Mean structural similarity over image pairs (scikit-image, colour, 7 px window)."""
    from skimage.metrics import structural_similarity

    out, ref = to_unit(outputs), to_unit(references)
    return float(np.mean([structural_similarity(o, r, channel_axis=-1, data_range=1.0) for o, r in zip(out, ref,
                                                                                                       strict=True)]))


def luma_error(outputs, references) -> float:
    """Mean absolute difference of 8-bit gray levels, each the level a gray file of the image holds
    (PIL's "L" conversion, condiff.palette.color_gray_levels): does the output, turned gray, give back
    the gray input?"""

    def levels(images) -> torch.Tensor:
        return color_gray_levels(torch.as_tensor(_array(images)))

    return float((levels(outputs) - levels(references)).abs().mean())


def colourfulness(images) -> float:
    """Hasler & Süsstrunk (2003) colourfulness, mean over images: 0 for gray, about 30-60 for vivid."""
    unit = 255 * to_unit(images)
    rg = unit[..., 0] - unit[..., 1]
    yb = 0.5 * (unit[..., 0] + unit[..., 1]) - unit[..., 2]
    flat = (len(unit), -1)
    rg, yb = rg.reshape(flat), yb.reshape(flat)
    spread = np.sqrt(rg.std(1) ** 2 + yb.std(1) ** 2)
    centre = np.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return float((spread + 0.3 * centre).mean())


FLAT_SPREAD = 8  # 8-bit levels: neighbours this close count as one flat area (antialiasing and noise are not)


def flat_area_noise(images) -> float | None:
    """How much flat areas shimmer: over the pixels whose 8 neighbours agree within FLAT_SPREAD levels in
    every channel, the mean distance (largest channel, 8-bit levels) of the pixel from its neighbours' mean.
    Edges do not count, so pixel art scores near 0 and a speck on a flat background scores its contrast.
    FD hardly sees a few levels of grain; a pixel artist sees it at once. None where no area is flat
    (uniform noise): there is nothing to measure, and 0 would read as perfect."""
    pixels = np.pad(to_uint8(torch.as_tensor(_array(images))).astype(float), ((0, 0), (1, 1), (1, 1), (0, 0)),
                    mode="edge")
    height, width = pixels.shape[1] - 2, pixels.shape[2] - 2
    neighbours = np.stack([pixels[:, 1 + dy: 1 + dy + height, 1 + dx: 1 + dx + width]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])  # (8, N, H, W, 3)
    flat = (neighbours.max(axis=0) - neighbours.min(axis=0)).max(axis=-1) <= FLAT_SPREAD
    distance = np.abs(pixels[:, 1:-1, 1:-1] - neighbours.mean(axis=0)).max(axis=-1)
    return float(distance[flat].mean()) if flat.any() else None


def edge_f1(predicted: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> float:
    """Mean F1 of boolean edge maps (N, 1, H, W): an edge counts as matched when the other map has one
    within `tolerance` pixels (chessboard distance). An image pair with no edges on either side scores 1."""
    predicted, target = predicted.bool(), target.bool()

    def widen(edges: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool2d(edges.float(), 2 * tolerance + 1, stride=1, padding=tolerance) > 0

    dims = (1, 2, 3)
    matched_predicted = (predicted & widen(target)).sum(dims).double()
    matched_target = (target & widen(predicted)).sum(dims).double()
    precision = matched_predicted / predicted.sum(dims).clamp(min=1)
    recall = matched_target / target.sum(dims).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    both_empty = (predicted.sum(dims) == 0) & (target.sum(dims) == 0)
    return float(torch.where(both_empty, torch.ones_like(f1), f1).mean())
