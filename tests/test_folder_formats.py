"""Model folders of every format load and sample the same: a folder written before the Denoiser component
(its settings in model_index.json) is kept as test data with the samples the code of that time drew from it
(tests/data/folder-before-denoiser/make.py, run with commit ab8091b); today's folders hold a `denoiser/`
component that diffusers' own `from_pretrained` loads."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condiff.cli.main import main
from condiff.images import open_image, to_uint8
from condiff.model_folder import load_pipeline, save_model, upgrade_folder
from condiff.sampling import make_sampler

ROOT = Path(__file__).parents[1]
BEFORE = Path(__file__).parent / "data" / "folder-before-denoiser"
SETTINGS = {"default": {}, "off": {"palette": "off", "silhouette": "off"}}


def samples(folder: Path, **steering) -> np.ndarray:
    """What make.py drew: 2 images of the drawing, DPM-Solver++ 6 steps, guidance 2, seed 3."""
    pipeline = load_pipeline(folder)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.scheduler = make_sampler(pipeline.scheduler, "dpm", 6)
    drawing = open_image(ROOT / "docs/images/input-drawing.png")
    images = pipeline(drawing, num_images_per_input=2, num_inference_steps=6, guidance=2.0, seed=3,
                      output_type="latent", **steering).images
    return np.concatenate(list(to_uint8(images)), axis=1)


def stored(name: str) -> np.ndarray:
    return np.asarray(Image.open(BEFORE / f"samples-{name}.png").convert("RGB"))


def assert_same_samples(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to another CPU's float rounding: one 8-bit level, in at most 1 of 1000 values."""
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() <= 0.001, (difference.max(), (difference > 0).mean())


@pytest.fixture
def before(tmp_path) -> Path:
    folder = tmp_path / "before"
    shutil.copytree(BEFORE / "model", folder)
    return folder


@pytest.mark.parametrize("name", SETTINGS)
def test_a_folder_saved_before_the_denoiser_samples_as_it_did(before, name):
    index = json.loads((before / "model_index.json").read_text())
    assert index["palette_head"] and index["self_condition"] and index["pixel_likelihood_until"] == 20
    pipeline = load_pipeline(before)
    assert pipeline.denoiser.config.self_condition and pipeline.denoiser.head.likelihood_until == 20
    assert_same_samples(samples(before, **SETTINGS[name]), stored(name))


def test_a_folder_saved_today_keeps_every_setting_in_its_denoiser_and_samples_the_same(before, tmp_path):
    old = load_pipeline(before)
    save_model(tmp_path / "today", old.unet, old.scheduler, old.conditions, old.denoiser)
    index = json.loads((tmp_path / "today" / "model_index.json").read_text())
    assert index["denoiser"] == ["condiff.denoiser", "Denoiser"] and "palette" not in index
    settings = json.loads((tmp_path / "today" / "denoiser" / "config.json").read_text())
    assert settings["pixel_likelihood_until"] == 20 and settings["condition_channels"] == [2]
    for name, steering in SETTINGS.items():
        assert_same_samples(samples(tmp_path / "today", **steering), stored(name))


def test_diffusers_own_loader_reads_the_denoiser_after_import_condiff(before, tmp_path):
    import subprocess
    import sys

    from condiff.denoiser import RULES

    old = load_pipeline(before)
    save_model(tmp_path / "today", old.unet, old.scheduler, old.conditions, old.denoiser)
    # A fresh interpreter: condiff first (no torch), diffusers after, as a user's script would.
    script = ("import condiff, json, sys; assert 'torch' not in sys.modules; "
              "from diffusers import DiffusionPipeline; "
              f"p = DiffusionPipeline.from_pretrained({str(tmp_path / 'today')!r}); "
              "print(type(p).__name__, json.dumps({k: p.denoiser.config[k] for k in %r}))" % sorted(RULES))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    name, settings = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert name == "ConditionalDDPMPipeline"
    assert json.loads(settings) == {key: old.denoiser.config[key] for key in sorted(RULES)}


def test_upgrade_rewrites_an_old_folder_only_when_asked_and_it_samples_the_same(before, capsys):
    untouched = (before / "model_index.json").read_bytes()
    load_pipeline(before)  # reading never rewrites
    assert (before / "model_index.json").read_bytes() == untouched and not (before / "denoiser").exists()
    assert main(["upgrade", str(before)]) == 0
    assert "upgraded" in capsys.readouterr().out
    assert "palette" not in json.loads((before / "model_index.json").read_text())
    for name, steering in SETTINGS.items():
        assert_same_samples(samples(before, **steering), stored(name))
    assert upgrade_folder(before) is False  # already in today's format


def test_a_damaged_denoiser_is_one_line_naming_its_file(before, tmp_path, capsys):
    upgrade_folder(before)
    settings_file = before / "denoiser" / "config.json"
    for change, fragment in (({"pixel_likelihood_until": 0}, "pixel_likelihood_until = 0 must be a whole number"),
                             ({"condition_channels": [1]}, "condition_channels = [1], but the conditions have [2]"),
                             ({"palette": None, "palette_frequencies": None}, "palette_head is true but there is no")):
        settings = json.loads(settings_file.read_text())
        settings_file.write_text(json.dumps({**settings, **change}))
        assert main(["sketch2img", "--model", str(before), str(ROOT / "docs/images/input-drawing.png"),
                     "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert "denoiser/config.json" in err and fragment in err and "\n" not in err
        assert not (tmp_path / "x.png").exists()
        settings_file.write_text(json.dumps(settings))
