"""Pictures of what diffusion does: image grids, denoising GIFs, the forward-noising strip, schedules.

Images come in as anything `condiff.images.to_uint8` takes. Upscaling is nearest-neighbour so pixel art
stays crisp. torch, diffusers and matplotlib are imported inside the functions that need them, so
importing this module stays cheap.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from condiff.config import BETA_SCHEDULES, RANGES, shown
from condiff.errors import CondiffError
from condiff.images import to_model_tensor, to_uint8, write_bytes_atomic

MAX_GRID_PIXELS = 2**28  # 268M pixels, 800 MB of RGB: a larger grid is a mistake, not a picture
LABEL_FONT_SIZE = 14
LABEL_MARGIN = 4
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


# ---------------------------------------------------------------------------------------------------
# Converting and arranging images
# ---------------------------------------------------------------------------------------------------


def make_grid(
    images: Any, ncols: int | None = None, scale: int = 1, padding: int = 1, pad_value: int = 255
) -> Image.Image:
    """Tile a batch into one RGB image, `ncols` per row (default ceil(sqrt(N))), each cell scaled up
    `scale` times by pixel repetition. `padding` pixels of `pad_value` surround and separate the cells:
    width = ncols * W * scale + (ncols + 1) * padding, and likewise for height."""
    batch = to_uint8(images)
    count, height, width, _ = batch.shape
    if count == 0:
        raise ValueError("make_grid needs at least one image")
    if scale < 1 or padding < 0 or (ncols is not None and ncols < 1):
        raise ValueError(f"need scale >= 1, padding >= 0, ncols >= 1; got {scale}, {padding}, {ncols}")
    ncols = min(ncols or math.ceil(math.sqrt(count)), count)
    nrows = math.ceil(count / ncols)
    cell_h, cell_w = height * scale, width * scale
    grid_shape = (nrows * cell_h + (nrows + 1) * padding, ncols * cell_w + (ncols + 1) * padding, 3)
    if grid_shape[0] * grid_shape[1] > MAX_GRID_PIXELS:
        raise CondiffError(f"a grid of {count} images of {width}x{height} enlarged {scale} times would be "
                           f"{grid_shape[1]}x{grid_shape[0]} px; use fewer images or a smaller scale")

    cells = batch.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour upscale, exact values
    grid = np.full(grid_shape, pad_value, dtype=np.uint8)
    for index, cell in enumerate(cells):
        row, col = divmod(index, ncols)
        top, left = padding + row * (cell_h + padding), padding + col * (cell_w + padding)
        grid[top : top + cell_h, left : left + cell_w] = cell
    return Image.fromarray(grid)


# ---------------------------------------------------------------------------------------------------
# Labels (Pillow's built-in font: no font files to ship)
# ---------------------------------------------------------------------------------------------------


@cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=LABEL_FONT_SIZE)


def _text_width(text: str) -> int:
    return int(math.ceil(_font().getbbox(text)[2]))


def _line_height() -> int:
    return int(math.ceil(_font().getbbox("Agy_=")[3]))  # bottom of the lowest glyph, from the origin


def _side_by_side(
    panels: Sequence[tuple[str, Image.Image]], label_widths: Sequence[int], gap: int = 12
) -> Image.Image:
    """Place panels left to right, each under its label, with a white margin around everything.

    Each slot is at least as wide as `label_widths` says, so that frames of an animation whose labels
    change length all have the same size and layout.
    """
    slot_widths = [max(panel.width, width) for (_, panel), width in zip(panels, label_widths, strict=True)]
    header = _line_height() + 2 * LABEL_MARGIN
    width = sum(slot_widths) + gap * (len(panels) - 1) + 2 * LABEL_MARGIN
    height = header + max(panel.height for _, panel in panels) + LABEL_MARGIN
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    left = LABEL_MARGIN
    for (label, panel), slot_width in zip(panels, slot_widths, strict=True):
        draw.text((left, LABEL_MARGIN), label, fill=BLACK, font=_font())
        canvas.paste(panel, (left, header))
        left += slot_width + gap
    return canvas


def _labelled_rows(
    rows: Sequence[Image.Image],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    cell_width: int,
    padding: int,
) -> Image.Image:
    """Stack one-row grids vertically, with a label left of each row and one above each column."""
    label_column = max(_text_width(label) for label in row_labels) + 2 * LABEL_MARGIN
    header = _line_height() + 2 * LABEL_MARGIN
    width = label_column + max(row.width for row in rows)
    height = header + sum(row.height for row in rows)
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for col, label in enumerate(column_labels):
        cell_left = label_column + padding + col * (cell_width + padding)
        draw.text(
            (cell_left + (cell_width - _text_width(label)) // 2, LABEL_MARGIN),
            label,
            fill=BLACK,
            font=_font(),
        )
    top = header
    for row, label in zip(rows, row_labels, strict=True):
        canvas.paste(row, (label_column, top))
        draw.text((LABEL_MARGIN, top + (row.height - _line_height()) // 2), label, fill=BLACK, font=_font())
        top += row.height
    return canvas


# ---------------------------------------------------------------------------------------------------
# The reverse process: an animation of sampling
# ---------------------------------------------------------------------------------------------------


def trajectory_frames(samples, scale: int = 4) -> list[Image.Image]:
    """GIF frames of a recorded reverse process (condiff.sampling.Samples, `record=True`): x_t beside the
    predicted x_0 at each step, ending on the result."""
    return denoising_gif_frames(samples.noisy + [samples.images], samples.predicted + [samples.images],
                                scale=scale, timesteps=samples.timesteps + [0])


def denoising_gif_frames(
    noisy: Sequence[Any],
    predicted: Sequence[Any],
    scale: int = 4,
    timesteps: Sequence[int] | None = None,
) -> list[Image.Image]:
    """One frame per reverse step: the grid of noisy x_t on the left, the predicted clean x_0 on the
    right. `noisy[i]` and `predicted[i]` are the batches at step i; `timesteps[i]`, if given, labels it.
    Lists of different lengths raise ValueError (a strict zip)."""
    if timesteps is None:
        noisy_labels = ["x_t"] * len(noisy)
    else:
        noisy_labels = [f"x_t   t={operator.index(step)}" for step in timesteps]
    predicted_label = "predicted x_0"
    label_widths = [max(map(_text_width, noisy_labels), default=0), _text_width(predicted_label)]
    frames = []
    for x_t, x_0, noisy_label in zip(noisy, predicted, noisy_labels, strict=True):
        panels = [
            (noisy_label, make_grid(x_t, scale=scale)),
            (predicted_label, make_grid(x_0, scale=scale)),
        ]
        frames.append(_side_by_side(panels, label_widths))
    return frames


GIF_FRAMES = 12  # frames a denoising GIF keeps: each noisy frame costs ~0.2 MB at 16 images, scale 4


def save_gif(
    frames: Sequence[Image.Image], path: str | os.PathLike, fps: float = 10, hold_last: float = 1.5,
    max_frames: int | None = GIF_FRAMES,
) -> int:
    """Write frames as a looping animated GIF, atomically, showing the last one for `hold_last` seconds,
    and return how many were written. With more than `max_frames`, evenly spaced ones are kept, the
    first and the last always (the noise and the result).

    Pillow merges consecutive identical frames (adding their durations), so a GIF read back can have
    fewer frames than were given when some are repeated.
    """
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    if max_frames is not None and len(frames) > max_frames >= 2:
        step = (len(frames) - 1) / (max_frames - 1)
        frames = [frames[round(i * step)] for i in range(max_frames)]
    if fps <= 0 or hold_last < 0:
        raise CondiffError(
            f"{os.fspath(path)}: need fps > 0 and hold_last >= 0, got fps={fps}, hold_last={hold_last}"
        )
    frame_ms = 1000.0 / fps
    durations = [round(frame_ms)] * (len(frames) - 1) + [round(max(frame_ms, 1000.0 * hold_last))]
    first, *rest = [frame.convert("RGB") for frame in frames]
    write_bytes_atomic(path, lambda tmp_path: first.save(tmp_path, format="GIF", save_all=True, append_images=rest,
                                                         duration=durations, loop=0, optimize=True), suffix=".gif")
    return len(frames)


# ---------------------------------------------------------------------------------------------------
# The forward process: how each schedule destroys an image
# ---------------------------------------------------------------------------------------------------


def forward_noised(
    image: Any,
    schedules: Sequence[str],
    timesteps: Sequence[int],
    num_train_timesteps: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """`add_noise(x0, noise, t)` for every schedule and timestep, with the same noise throughout.

    `image` is a uint8 (H, W, 3) array, a PIL image or a (3, H, W) tensor in [-1, 1]. Returns uint8 of
    shape (len(schedules), len(timesteps), H, W, 3).
    """
    _check_timesteps(timesteps, num_train_timesteps)
    if not schedules:
        raise CondiffError("no noise schedules given; name at least one of " + ", ".join(BETA_SCHEDULES))
    import torch

    pixels = to_uint8(image)
    if pixels.shape[0] != 1:
        raise ValueError(f"forward_noised takes one image, got a batch of {pixels.shape[0]}")
    x0 = to_model_tensor(pixels)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([operator.index(step) for step in timesteps], dtype=torch.long)
    batch_shape = (len(t), *x0.shape[1:])
    rows = []
    for name in schedules:
        scheduler = _ddpm_scheduler(name, num_train_timesteps)
        rows.append(to_uint8(scheduler.add_noise(x0.expand(batch_shape), noise.expand(batch_shape), t)))
    return np.stack(rows)


def noise_strip(
    image: Any,
    schedules: Sequence[str],
    timesteps: Sequence[int],
    num_train_timesteps: int = 1000,
    seed: int = 0,
    scale: int = 4,
) -> Image.Image:
    """The forward-process figure: one row per schedule (labelled), one column per timestep (t=...)."""
    noised = forward_noised(image, schedules, timesteps, num_train_timesteps, seed)
    padding = 2
    rows = [make_grid(row, ncols=len(timesteps), scale=scale, padding=padding) for row in noised]
    cell_width = noised.shape[3] * scale
    column_labels = [f"t={operator.index(step)}" for step in timesteps]
    return _labelled_rows(rows, list(schedules), column_labels, cell_width, padding)


def plot_schedules(
    path: str | os.PathLike, schedules: Sequence[str] = BETA_SCHEDULES, num_train_timesteps: int = 1000
) -> None:
    """Save a two-panel figure, beta_t and alpha-bar_t (the signal kept) against t, one line per schedule.

    The beta panel has a log axis: squaredcos_cap_v2 ends at 0.999 and would flatten the others.
    The format follows the extension of `path` (PNG when it has none). Written atomically.
    """
    # The object-oriented API with an explicit Agg canvas: no pyplot, so the caller's backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_num_train_timesteps(num_train_timesteps)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    beta_axes, signal_axes = figure.subplots(1, 2)
    t = np.arange(num_train_timesteps)
    for name in schedules:
        scheduler = _ddpm_scheduler(name, num_train_timesteps)
        beta_axes.plot(t, scheduler.betas.numpy(), label=name)
        signal_axes.plot(t, scheduler.alphas_cumprod.numpy(), label=name)
    beta_axes.set(
        yscale="log",
        xlabel="timestep t",
        ylabel=r"$\beta_t$ (log scale)",
        title=r"noise added at each step, $\beta_t$",
    )
    signal_axes.set(
        xlabel="timestep t",
        ylabel=r"$\bar\alpha_t$",
        ylim=(-0.02, 1.02),
        title=r"signal kept, $\bar\alpha_t$ (alphas_cumprod)",
    )
    for axes in (beta_axes, signal_axes):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.suptitle(f"DDPM noise schedules (num_train_timesteps={num_train_timesteps})")
    write_bytes_atomic(path, lambda tmp_path: figure.savefig(tmp_path, dpi=120))


def _whole_in(value: Any, limits: Any) -> bool:
    """Whether `value` is an integer (int, numpy or 0-d torch integer) in `limits`."""
    try:
        return operator.index(value) in limits
    except TypeError:
        return False


def _check_num_train_timesteps(num_train_timesteps: int) -> None:
    """A whole number of timesteps within the recipes' range (the schedule holds one beta per timestep)."""
    limits = RANGES["scheduler.num_train_timesteps"]
    if not _whole_in(num_train_timesteps, limits):
        raise CondiffError(f"num_train_timesteps must be a whole number {limits}, got {shown(num_train_timesteps)}")


def _check_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> None:
    _check_num_train_timesteps(num_train_timesteps)
    valid = f"use integers in 0..{num_train_timesteps - 1} (num_train_timesteps={num_train_timesteps})"
    if len(timesteps) == 0:
        raise CondiffError(f"no timesteps given; {valid}")
    for step in timesteps:
        if not _whole_in(step, range(num_train_timesteps)):
            raise CondiffError(f"timestep {shown(step)} is out of range; {valid}")


def _ddpm_scheduler(name: str, num_train_timesteps: int) -> Any:
    from diffusers import DDPMScheduler

    try:
        return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=name)
    except NotImplementedError as err:
        raise CondiffError(
            f"unknown noise schedule {name!r}; use one of {', '.join(BETA_SCHEDULES)}"
        ) from err
