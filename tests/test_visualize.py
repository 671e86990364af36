"""Grids, denoising GIFs, the forward-noising strip and the schedule plot."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from condiff.errors import CondiffError
from condiff.images import to_uint8
from condiff.visualize import (
    denoising_gif_frames,
    forward_noised,
    make_grid,
    noise_strip,
    plot_schedules,
    save_gif,
)


def _random_batch(count: int, height: int = 5, width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _colourful_image(size: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 255 // size, y * 255 // size, 255 - (x + y) * 127 // size], axis=-1)
    return image.astype(np.uint8)


def test_importing_visualize_is_cheap():
    heavy = "{'torch', 'diffusers', 'matplotlib'}"
    code = f"import sys, condiff.visualize; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------
# to_uint8 and make_grid
# ---------------------------------------------------------------------------------------------------


def test_to_uint8_maps_the_model_range_to_bytes():
    tensor = torch.tensor([-1.0, 0.0, 1.0, 5.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    np.testing.assert_array_equal(to_uint8(tensor)[0, 0, :, 0], [0, 128, 255, 255])
    assert to_uint8(torch.zeros(3, 6, 7)).shape == (1, 6, 7, 3)
    assert to_uint8(np.zeros((6, 7, 3), np.uint8)).shape == (1, 6, 7, 3)


def test_to_uint8_rejects_ambiguous_input():
    with pytest.raises(TypeError):
        to_uint8(np.zeros((2, 4, 4, 3), np.float32))  # float array: 0..1 or -1..1? say uint8 or tensor
    with pytest.raises(ValueError):
        to_uint8(np.zeros((2, 3, 4, 4), np.uint8))  # channels first


@pytest.mark.parametrize(
    ("count", "ncols", "scale", "padding", "expected_cols", "expected_rows"),
    [
        (7, None, 1, 1, 3, 3),
        (4, None, 2, 0, 2, 2),
        (5, 5, 3, 2, 5, 1),
        (3, 10, 1, 1, 3, 1),
        (1, None, 4, 1, 1, 1),
    ],
)
def test_grid_size(count, ncols, scale, padding, expected_cols, expected_rows):
    grid = make_grid(_random_batch(count, 5, 4), ncols=ncols, scale=scale, padding=padding)
    assert grid.size == (
        expected_cols * 4 * scale + (expected_cols + 1) * padding,
        expected_rows * 5 * scale + (expected_rows + 1) * padding,
    )


def test_grid_upscale_is_nearest_neighbour_and_exact():
    batch = _random_batch(3, 5, 4)
    scale, padding = 3, 2
    grid = np.asarray(make_grid(batch, ncols=2, scale=scale, padding=padding, pad_value=7))
    for index, image in enumerate(batch):
        row, col = divmod(index, 2)
        top, left = padding + row * (5 * scale + padding), padding + col * (4 * scale + padding)
        cell = grid[top : top + 5 * scale, left : left + 4 * scale]
        np.testing.assert_array_equal(cell, image.repeat(scale, axis=0).repeat(scale, axis=1))
    assert (grid[:padding] == 7).all()  # the border
    assert (grid[-(5 * scale + padding) :, -(4 * scale + padding) :] == 7).all()  # the empty fourth cell


# ---------------------------------------------------------------------------------------------------
# Denoising GIF
# ---------------------------------------------------------------------------------------------------


def test_denoising_gif_has_one_looping_frame_per_step(tmp_path):
    steps = 6
    noisy = [torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(steps)]
    predicted = [_random_batch(4, 8, 8, seed=i) for i in range(steps)]
    frames = denoising_gif_frames(noisy, predicted, scale=2, timesteps=torch.linspace(999, 0, steps).long())
    assert len(frames) == steps and len({frame.size for frame in frames}) == 1

    path = tmp_path / "gifs" / "sampling.gif"
    save_gif(frames, path, fps=20, hold_last=1.5)
    assert os.listdir(path.parent) == ["sampling.gif"]
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == steps and gif.info["loop"] == 0
        assert gif.size == frames[0].size
        gif.seek(steps - 1)
        assert gif.info["duration"] == 1500  # the last frame is held


def test_denoising_frames_need_matching_lengths():
    with pytest.raises(ValueError):
        denoising_gif_frames([_random_batch(1)] * 3, [_random_batch(1)] * 2)


def test_save_gif_rejects_bad_fps(tmp_path):
    with pytest.raises(CondiffError, match="fps"):
        save_gif([Image.new("RGB", (2, 2))], tmp_path / "a.gif", fps=0)
    assert not (tmp_path / "a.gif").exists()


# ---------------------------------------------------------------------------------------------------
# Forward process
# ---------------------------------------------------------------------------------------------------


def test_noising_keeps_the_image_at_t0_and_destroys_it_later():
    image = _colourful_image()
    schedules = ["linear", "scaled_linear", "squaredcos_cap_v2"]
    noised = forward_noised(image, schedules, [0, 250, 999])
    assert noised.shape == (3, 3, 32, 32, 3) and noised.dtype == np.uint8
    for row in noised:
        error = [np.abs(cell.astype(int) - image).mean() for cell in row]
        assert error[0] < 2.0  # at t=0 about 99.99% of the signal is kept
        assert error[0] < error[1] < error[2]


def test_noising_is_reproducible_and_uses_one_noise_for_all_schedules():
    image = _colourful_image()
    first = forward_noised(image, ["linear", "scaled_linear"], [999], seed=3)
    np.testing.assert_array_equal(first, forward_noised(image, ["linear", "scaled_linear"], [999], seed=3))
    # At the last step every schedule is nearly pure noise: the same noise, so nearly the same picture.
    assert np.abs(first[0].astype(int) - first[1]).mean() < 3.0


def test_noise_strip_has_a_labelled_cell_per_schedule_and_timestep():
    strip = noise_strip(_colourful_image(16), ["linear", "squaredcos_cap_v2"], [0, 500, 999], scale=2)
    cell = 16 * 2
    assert strip.width > 3 * cell and strip.height > 2 * cell  # cells plus room for labels


@pytest.mark.parametrize("bad", [-1, 1000, 2.5])
def test_bad_timestep_is_a_user_error_naming_the_range(bad):
    with pytest.raises(CondiffError, match=r"0\.\.999") as caught:
        noise_strip(_colourful_image(8), ["linear"], [0, bad])
    assert repr(bad) in str(caught.value)


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(CondiffError, match="squaredcos_cap_v2"):
        forward_noised(_colourful_image(8), ["cosine-ish"], [0])


def test_plot_schedules_writes_a_png(tmp_path):
    path = tmp_path / "plots" / "schedules.png"
    plot_schedules(path, num_train_timesteps=100)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height > 100
    assert os.listdir(path.parent) == ["schedules.png"]


def test_a_long_animation_keeps_evenly_spaced_frames_first_and_last_included(tmp_path):
    frames = [Image.new("RGB", (8, 8), (10 * i, 0, 0)) for i in range(26)]
    assert save_gif(frames, tmp_path / "a.gif") == 12
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 12
    reds = []
    for index in range(gif.n_frames):
        gif.seek(index)
        reds.append(gif.convert("RGB").getpixel((0, 0))[0])
    assert reds[0] == 0 and reds[-1] == 250 and reds == sorted(reds)
    assert save_gif(frames, tmp_path / "all.gif", max_frames=None) == 26
