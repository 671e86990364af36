"""The condition-use gap: the loss with shuffled minus true conditions, measured while training."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from condiff.cli.main import main
from condiff.config import recipe_from_dict
from condiff.data.sources import build_dataset
from condiff.denoiser import Denoiser
from condiff.evaluation.held_out import INPUT_SEED, held_out_nouns
from condiff.model_folder import load_pipeline, load_unet
from condiff.tasks import MODELS_ROOT
from condiff.training.condition_use import ConditionUseProbe
from condiff.training.from_recipe import train_recipe
from tests.conftest import one_line_error, tiny_values


def _tiny_unet(in_channels: int):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=in_channels, out_channels=3, block_out_channels=(8, 8),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)


def _probe(unet, condition_channels=1):
    from diffusers import DDPMScheduler

    images = torch.rand(4, 3, 16, 16) * 2 - 1
    condition = torch.rand(4, condition_channels, 16, 16) * 2 - 1
    return ConditionUseProbe(Denoiser(condition_channels=[condition_channels]), DDPMScheduler(100), images, condition)


def test_a_network_that_ignores_its_condition_has_no_gap_and_one_that_reads_it_has_one():
    unet = _tiny_unet(4)
    reading = _probe(unet).measure(unet)
    with torch.no_grad():
        unet.conv_in.weight[:, 3] = 0  # the condition's channel no longer reaches anything
    ignoring = _probe(unet).measure(unet)
    assert {"low gap", "mid gap", "high gap", "gap"} <= set(ignoring)
    assert all(ignoring[f"{band} gap"] == 0.0 for band in ("low", "mid", "high"))
    assert all(ignoring[f"{band} true"] > 0 for band in ("low", "mid", "high"))
    assert all(abs(reading[f"{band} gap"]) > 1e-6 for band in ("low", "mid", "high"))


def test_measuring_leaves_the_training_rng_and_mode_alone():
    unet = _tiny_unet(4)
    unet.train()
    probe = _probe(unet)
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    first = probe.measure(unet)
    assert torch.equal(torch.rand(3), before) and unet.training
    assert probe.measure(unet) == first  # fixed noise and timesteps: the same weights give the same numbers


@pytest.mark.parametrize("task", ["colorize", "sketch2img"])
def test_the_shipped_models_use_their_condition(task):
    pipeline = load_pipeline(MODELS_ROOT / task)
    clean = held_out_nouns(8, INPUT_SEED, pipeline.resolution)
    torch.manual_seed(0)
    condition = pipeline.conditions.encode_training(clean, apply_dropout=False)
    values = ConditionUseProbe(pipeline.denoiser, pipeline.scheduler, clean, condition).measure(pipeline.unet.float())
    # Measured: colorize 0.31 to 0.77 per band, sketch2img 0.012 to 0.045; a network blind to it has 0.
    assert values["gap"] > 0.01 and values["high gap"] > 0.01, values


def _folder(path, count: int):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


def test_held_out_every_keeps_every_nth_image_out_of_training(tmp_path):
    folder = _folder(tmp_path / "images", 10)
    values = tiny_values(tmp_path / "run")
    values["data"] = {"source": str(folder), "resolution": 16, "held_out_every": 5, "size": None}
    dataset = build_dataset(recipe_from_dict(values).data)
    assert len(dataset) == 8 and len(dataset.held_out) == 2
    everything = build_dataset(recipe_from_dict({**values, "data": {**values["data"], "held_out_every": 0}}).data)
    assert np.array_equal(dataset.held_out.images, everything.images[[0, 5]])
    assert np.array_equal(dataset.images, everything.images[[1, 2, 3, 4, 6, 7, 8, 9]])


def test_holding_out_every_image_is_a_one_line_error(tmp_path, capsys):
    folder = _folder(tmp_path / "images", 3)
    values = tiny_values(tmp_path / "run")
    values["data"] = {"source": str(folder), "resolution": 16, "held_out_every": 1, "size": None}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(values))
    one_line_error(capsys, ["train", str(recipe)], "data.held_out_every: 1 would hold out all 3 images")
    assert not (tmp_path / "run" / "model_index.json").exists()


def _conditional_values(tmp_path, name: str, **train):
    values = tiny_values(tmp_path / name, **train)
    values["conditions"] = [{"name": "grayscale"}]
    return values


def test_training_logs_the_gap_and_the_card_shows_it(tmp_path, capsys):
    train_recipe(recipe_from_dict(_conditional_values(tmp_path, "run")))
    out = capsys.readouterr().out
    assert "condition-use gap" in out and "8 held-out Nouns (seed 1)" in out
    summary = (tmp_path / "run" / "training_summary.json").read_text()
    assert '"condition_use"' in summary
    assert main(["info", str(tmp_path / "run")]) == 0
    card = capsys.readouterr().out
    assert "## Does it use its condition?" in card and "| t >= 37 |" in card and "| mean | | |" in card


def test_the_gap_changes_nothing_that_is_trained(tmp_path):
    train_recipe(recipe_from_dict(_conditional_values(tmp_path, "often", log_every=1)))
    train_recipe(recipe_from_dict(_conditional_values(tmp_path, "once", log_every=1000)))
    often, once = load_unet(str(tmp_path / "often")), load_unet(str(tmp_path / "once"))
    for (name, a), (_, b) in zip(often.state_dict().items(), once.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_an_unconditional_run_measures_no_gap(tmp_path, capsys):
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run")))
    assert "condition-use gap" not in capsys.readouterr().out
    assert "Does it use its condition" not in (tmp_path / "run" / "README.md").read_text()
