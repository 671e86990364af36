"""Palettes: found in the data at training start, saved with the model, used when sampling."""

import json

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from PIL import Image

from condiff.cli.main import main
from condiff.errors import CondiffError
from condiff.images import luma, to_uint8
from condiff.model import output_for_x0, predict_x0
from condiff.model_folder import load_pipeline
from condiff.palette import (
    find_palette,
    from_hex,
    nearest_colors,
    on_palette_share,
    palette_tensor,
    snap_to_palette,
    to_hex,
)
from condiff.steering.base import SteeringContext
from condiff.steering.lightness import keep_luma
from condiff.steering.palette import PaletteSteps
from tests.conftest import tiny_values

SPRITE_COLORS = np.array([[20, 20, 40], [240, 200, 60], [200, 40, 60], [90, 180, 220]], np.uint8)


def sprite(rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A 4-colour sprite: a background, a body rectangle, a head block and two eyes."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = SPRITE_COLORS[0]
    top, left = rng.integers(2, 5, 2)
    image[top + 4:size - 2, left:size - left] = SPRITE_COLORS[1]
    image[top:top + 5, left + 2:size - left - 2] = SPRITE_COLORS[2]
    image[top + 2, [left + 3, size - left - 4]] = SPRITE_COLORS[3]
    return image


def test_the_exact_colours_are_found_and_too_many_colours_give_none_or_kmeans():
    rng = np.random.default_rng(0)
    found = find_palette([sprite(rng) for _ in range(20)])
    assert sorted(map(tuple, found.colors.tolist())) == sorted(map(tuple, SPRITE_COLORS.tolist()))
    assert "4 exact colours" in found.note
    assert found.frequencies.shape == (4,) and abs(found.frequencies.sum() - 1) < 1e-9
    background = [tuple(c) for c in found.colors.tolist()].index(tuple(SPRITE_COLORS[0].tolist()))
    assert found.frequencies.argmax() == background  # the background covers most pixels
    photos = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    none = find_palette(photos, "auto", 256)
    assert none.colors is None and "more than data.palette_size 256" in none.note and "\n" not in none.note
    kmeans = find_palette(photos, "kmeans", 16)
    assert 1 < len(kmeans.colors) <= 16 and "k-means" in kmeans.note
    assert find_palette(photos, "off").colors is None


def test_colours_round_trip_as_hex_and_bad_ones_are_one_line():
    assert np.array_equal(from_hex(to_hex(SPRITE_COLORS)), SPRITE_COLORS)
    for bad in (["#12345"], ["red"], [], "#000000", [[1, 2, 3]]):
        with pytest.raises(CondiffError, match="#rrggbb"):
            from_hex(bad)


def test_snapping_puts_every_pixel_on_its_nearest_colour():
    palette = palette_tensor(SPRITE_COLORS)
    truth = palette[torch.randint(0, 4, (2, 8, 8))].permute(0, 3, 1, 2)
    noisy = (truth + 0.05 * torch.randn_like(truth)).clamp(-1, 1)
    snapped = nearest_colors(noisy, palette)
    assert torch.equal(snapped, truth)
    assert on_palette_share(to_uint8(snapped), SPRITE_COLORS) == 1.0
    assert on_palette_share(to_uint8(noisy), SPRITE_COLORS) < 0.2


def test_snapping_to_a_lightness_picks_the_colour_of_that_lightness():
    # Two colours of one lightness and one darker: the gray decides the lightness, the colour the hue.
    colors = np.array([[200, 40, 40], [40, 120, 200], [10, 10, 10]], np.uint8)
    palette = palette_tensor(colors)
    target = luma(palette[:1, :, None, None])  # the red's lightness
    reddish = torch.tensor([0.4, -0.5, -0.5]).view(1, 3, 1, 1)
    bluish = torch.tensor([-0.6, 0.0, 0.6]).view(1, 3, 1, 1)
    palette_luma = luma(palette[:, :, None, None]).flatten()
    assert abs(palette_luma[0] - palette_luma[1]) > 2 / 255  # the blue is of another lightness here
    assert torch.equal(nearest_colors(reddish, palette, luma_target=target), palette[:1, :, None, None])
    assert torch.equal(nearest_colors(bluish, palette, luma_target=target), palette[:1, :, None, None])
    assert torch.equal(nearest_colors(bluish, palette), palette[1:2, :, None, None])  # without: the blue


def test_among_colours_of_one_lightness_the_common_one_wins_unless_the_model_is_sure(monkeypatch):
    import condiff.palette

    monkeypatch.setattr(condiff.palette, "COLOR_SPREAD", 0.5)
    # Two colours of exactly one lightness: red (rare) and a gray (common).
    red = np.array([200, 40, 40])
    gray_level = int(round(float(red @ np.array([0.299, 0.587, 0.114]))))
    colors = np.array([red, [gray_level] * 3], np.uint8)
    palette = palette_tensor(colors)
    target = luma(palette[1].view(1, 3, 1, 1))
    frequencies = torch.tensor([0.3, 0.7])
    unsure = palette[1].view(1, 3, 1, 1) * 0.5 + palette[0].view(1, 3, 1, 1) * 0.5 + 0.1  # between the two
    assert torch.equal(nearest_colors(unsure, palette, target, frequencies=frequencies), palette[1].view(1, 3, 1, 1))
    assert torch.equal(nearest_colors(palette[0].view(1, 3, 1, 1), palette, target, frequencies=frequencies),
                       palette[0].view(1, 3, 1, 1))


def test_only_colours_of_the_gray_files_level_compete_even_when_another_level_is_closer_than_half_a_level():
    # The Nouns' watermelon glasses (luma 131.62, gray level 132) and a commoner green (luma 131.10,
    # level 131): half a level apart, yet a gray file never shows the green as 132.
    colors = np.array([[236, 91, 67], [52, 172, 128]], np.uint8)
    palette = palette_tensor(colors)
    frequencies = torch.tensor([0.2, 0.8])
    for target in (luma(palette[0].view(1, 3, 1, 1)), torch.full((1, 1, 1, 1), 132 / 127.5 - 1)):
        snapped = nearest_colors(palette[1].view(1, 3, 1, 1), palette, target, frequencies=frequencies)
        assert torch.equal(snapped, palette[0].view(1, 3, 1, 1))
        assert torch.equal(keep_luma(snap_to_palette(palette[1].view(1, 3, 1, 1), palette, target, frequencies),
                                     target, snapped=True), palette[0].view(1, 3, 1, 1))
    level_131 = torch.full((1, 1, 1, 1), 131 / 127.5 - 1)
    assert torch.equal(nearest_colors(palette[0].view(1, 3, 1, 1), palette, level_131, frequencies=frequencies),
                       palette[1].view(1, 3, 1, 1))


def test_colorize_keeps_the_input_lightness_where_no_palette_colour_has_it():
    palette = palette_tensor(SPRITE_COLORS)
    on = palette[1].view(1, 3, 1, 1)
    gray_on = luma(on)
    gray_off = torch.full((1, 1, 1, 1), -0.2)  # no sprite colour has this lightness
    assert (luma(palette[:, :, None, None]).flatten() + 0.2).abs().min() > 0.05
    gray = torch.cat([gray_on, gray_off], dim=3)
    model_colors = torch.cat([on + 0.03, torch.tensor([0.1, 0.0, -0.1]).view(1, 3, 1, 1)], dim=3)
    snapped = snap_to_palette(model_colors, palette, gray)
    assert torch.equal(snapped[..., 1:], model_colors[..., 1:])  # no colour of its lightness: left as made
    out = keep_luma(snapped, gray, snapped=True)
    assert torch.equal(out[..., :1], on)  # on the palette: its colour exactly
    # off it: the input's lightness with the model's colour
    assert torch.equal(out[..., 1:], keep_luma(model_colors, gray)[..., 1:])
    assert abs(float(luma(out[..., 1:])) + 0.2) < 1e-6


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_model_output_for_a_clean_image_implies_that_image(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type, beta_schedule="squaredcos_cap_v2")
    x_t, x0 = torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4) * 2 - 1
    for t in (5, 500, 990):
        assert torch.allclose(predict_x0(scheduler, output_for_x0(scheduler, x0, x_t, t), x_t, t), x0, atol=1e-4)


def test_the_projection_touches_only_the_last_steps_and_pulls_fully_at_the_end():
    scheduler = DDPMScheduler(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    palette = palette_tensor(SPRITE_COLORS)
    projection, context = PaletteSteps(palette, project=True, fraction=0.3), SteeringContext(steps=10)
    x_t, output = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    x0 = predict_x0(scheduler, output, x_t, 10)
    assert all(projection.on_prediction(x0, i, context) is None for i in range(7))
    assert torch.allclose(projection.on_prediction(x0, 9, context), nearest_colors(x0, palette), atol=1e-4)
    assert PaletteSteps(palette).on_prediction(x0, 9, context) is None  # snapping only: no pull


@pytest.fixture(scope="module")
def sprite_model(tmp_path_factory):
    """A tiny model trained on a folder of 4-colour sprites."""
    root = tmp_path_factory.mktemp("sprites")
    folder = root / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(16):
        Image.fromarray(sprite(rng)).save(folder / f"{i}.png")
    values = tiny_values(root / "model", max_steps=2)
    values["data"] = {"source": str(folder), "resolution": 16, "size": None}
    recipe = root / "sprites.yaml"
    recipe.write_text(yaml.safe_dump(values))
    return recipe, root / "model"


def test_a_sprite_folder_gets_its_palette_saved_reloaded_and_used(sprite_model, tmp_path, capsys):
    recipe, model = sprite_model
    if not (model / "model_index.json").exists():
        assert main(["train", str(recipe)]) == 0
        assert "condiff: palette: the data's 4 exact colours" in capsys.readouterr().out
    index = json.loads((model / "denoiser" / "config.json").read_text())  # what the UNet's output means
    saved = index["palette"]
    assert sorted(saved) == sorted(to_hex(SPRITE_COLORS))
    assert len(index["palette_frequencies"]) == 4 and abs(sum(index["palette_frequencies"]) - 1) < 1e-6
    pipeline = load_pipeline(model)
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.denoiser.palette.shape == (4, 3)
    # A round trip through diffusers' own save_pretrained / from_pretrained keeps it.
    pipeline.save_pretrained(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "denoiser" / "config.json").read_text())["palette"] == saved
    # Used by default: every pixel on the palette; --palette off leaves the model's own colours.
    shares = {}
    for mode in ("auto", "project", "snap", "off"):
        images = pipeline(batch_size=4, num_inference_steps=4, seed=0, output_type="latent", palette=mode).images
        shares[mode] = on_palette_share(to_uint8(images), SPRITE_COLORS)
    assert shares["auto"] == shares["project"] == shares["snap"] == 1.0 and shares["off"] < 0.5
    out = tmp_path / "grid.png"
    assert main(["sample", "--model", str(model), "--num", "4", "--steps", "3", "--scale", "1", "--out", str(out)]) == 0
    assert set(map(tuple, np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).tolist())) <= \
        set(map(tuple, SPRITE_COLORS.tolist())) | {(255, 255, 255)}  # the grid's white lines


def test_a_photo_dataset_gets_no_palette_unless_kmeans_is_asked(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    for palette, expected in (("auto", "no palette: the data has"), ("kmeans", "k-means colours")):
        values = tiny_values(tmp_path / palette, max_steps=1)
        values["data"] = {"source": str(folder), "resolution": 16, "size": None, "palette": palette,
                          "palette_size": 8}
        recipe = tmp_path / f"{palette}.yaml"
        recipe.write_text(yaml.safe_dump(values))
        assert main(["train", str(recipe)]) == 0
        log = capsys.readouterr().out
        assert expected in log
        saved = json.loads((tmp_path / palette / "denoiser" / "config.json").read_text()).get("palette")
        assert (saved is None) == (palette == "auto")
    pipeline = load_pipeline(tmp_path / "auto")
    with pytest.raises(CondiffError, match="this model has no palette"):
        pipeline(batch_size=1, num_inference_steps=2, palette="snap")
    assert main(["sample", "--model", str(tmp_path / "auto"), "--palette", "project", "--out",
                 str(tmp_path / "x.png")]) == 2
    assert "has no palette" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_a_damaged_palette_in_a_model_folder_is_one_line(sprite_model, tmp_path, capsys):
    import shutil

    recipe, model = sprite_model
    if not (model / "model_index.json").exists():
        assert main(["train", str(recipe)]) == 0
    copy = tmp_path / "damaged"
    shutil.copytree(model, copy)
    settings = json.loads((copy / "denoiser" / "config.json").read_text())
    settings["palette"] = ["#zzzzzz"]
    (copy / "denoiser" / "config.json").write_text(json.dumps(settings))
    assert main(["sample", "--model", str(copy), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "palette" in err and "#rrggbb" in err and "\n" not in err


def test_a_colour_whose_luma_lies_near_a_half_level_comes_back_from_its_gray_file():
    # (0, 207, 35) has luma 125.499; PIL's gray file shows it as 126, not 125.
    colors = np.array([[0, 207, 35], [200, 200, 200]], np.uint8)
    level = int(np.asarray(Image.new("RGB", (1, 1), (0, 207, 35)).convert("L"))[0, 0])
    assert level == 126
    palette = palette_tensor(colors)
    gray = torch.full((1, 1, 1, 1), level / 127.5 - 1)
    guess = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    out = keep_luma(snap_to_palette(guess, palette, gray), gray, snapped=True)
    assert torch.equal(out, palette[0].view(1, 3, 1, 1))
