"""What a training run tells and keeps: the work it is about to do, a checkpoint on Ctrl-C, and
TensorBoard logs with the final preview and the hyperparameters."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from condiff.cli.main import main
from condiff.training.checkpoints import list_checkpoints, read_trainer_state
from tests.conftest import tiny_values, write_tiny_recipe

ROOT = Path(__file__).parents[1]


def test_a_run_says_how_many_images_steps_and_epochs_it_will_train(tmp_path, capsys):
    recipe, _ = write_tiny_recipe(tmp_path, max_steps=4)
    assert main(["train", str(recipe)]) == 0
    assert "training on 32 images (nouns): 4 steps of 4 images, 0.5 epochs, on " in capsys.readouterr().out


def test_train_runs_on_the_device_asked_for_and_refuses_others_in_one_line(tmp_path, capsys):
    import torch

    recipe, run = write_tiny_recipe(tmp_path, max_steps=2)
    assert main(["train", str(recipe), "--device", "cpu"]) == 0
    assert "0.2 epochs, on cpu" in capsys.readouterr().out
    (tmp_path / "other").mkdir()
    other, other_run = write_tiny_recipe(tmp_path / "other", max_steps=2)
    wrong = ["banana", "cuda:7" if torch.cuda.is_available() else "cuda"]
    for device in wrong:
        assert main(["train", str(other), "--device", device]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"condiff: error: --device {device}:") and "\n" not in err
        assert not other_run.exists()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_the_first_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path, signal_number):
    recipe, run = write_tiny_recipe(tmp_path, max_steps=100_000, checkpoint_every=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "condiff", "train", str(recipe)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "recipe.yaml").exists() and time.monotonic() < deadline:  # training has started
        time.sleep(0.2)
    time.sleep(3)  # a few steps
    child.send_signal(signal_number)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    saved = list_checkpoints(run)
    assert len(saved) == 1, err[-2000:]
    step = read_trainer_state(saved[-1])["step"]
    assert step >= 1 and f"interrupted at step {step}; saved the checkpoint" in err
    assert "--set train.resume=latest" in err
    assert not (run / "model_index.json").exists()  # an interrupted run is not a finished model
    done = subprocess.run([sys.executable, "-m", "condiff", "train", str(recipe), "--set", "train.resume=latest",
                           "--set", f"train.max_steps={step + 1}"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {saved[-1]} at step {step}" in done.stdout
    assert (run / "model_index.json").exists()


def test_tensorboard_gets_the_final_preview_and_the_hyperparameters(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, run = write_tiny_recipe(tmp_path, max_steps=2, tensorboard=True, sample_every=0)
    assert main(["train", str(recipe)]) == 0
    events = [path for path in (run / "logs").rglob("events.out.tfevents.*")]
    tags = {"images": set(), "scalars": set()}
    for path in events:
        accumulator = EventAccumulator(str(path.parent), size_guidance={"images": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    assert "samples" in tags["images"]  # the final preview, though sample_every is 0
    assert "loss" in tags["scalars"]
    hparams = [path for path in events if path.stat().st_size and b"hparams" in path.read_bytes()]
    assert hparams and b"train.lr" in hparams[0].read_bytes()


def test_a_recipe_can_start_from_the_shipped_unconditional_model(tmp_path):
    from condiff.config import recipe_from_dict
    from condiff.errors import CondiffError
    from condiff.model_folder import load_unet
    from condiff.tasks import UNCONDITIONAL
    from condiff.training.from_recipe import build_parts

    values = tiny_values(tmp_path / "run")
    values["model"] = {"init_from": "shipped:unconditional", "palette_head": True,  # it has a palette head
                       "pixel_likelihood_until": 5}  # (the default 100 is beyond the tiny recipe's timesteps)
    values["conditions"] = [{"name": "grayscale"}]
    with pytest.raises(CondiffError, match="set model.pixel_likelihood: false"):  # ... trained without it
        build_parts(recipe_from_dict(values))
    values["model"]["pixel_likelihood"] = False
    unet = build_parts(recipe_from_dict(values)).unet
    shipped = load_unet(str(UNCONDITIONAL.shipped_folder))
    assert unet.config.in_channels == 4 and unet.config.out_channels == shipped.config.out_channels
    assert (unet.conv_in.weight[:, :3] == shipped.conv_in.weight).all()
    values["model"] = {"init_from": "shipped:unconditional"}
    with pytest.raises(CondiffError, match="set model.palette_head: true"):
        build_parts(recipe_from_dict(values))
    values["model"] = {"init_from": "shipped:colourise"}
    with pytest.raises(CondiffError, match="no shipped model 'colourise'.*shipped:unconditional"):
        build_parts(recipe_from_dict(values))


def test_every_trained_folder_has_a_model_card_that_info_prints(tmp_path, capsys):
    from condiff.config import recipe_from_dict
    from condiff.training.from_recipe import train_recipe

    values = tiny_values(tmp_path / "run", max_steps=2)
    values["conditions"] = [{"name": "canny", "dropout": 0.1}]
    train_recipe(recipe_from_dict(values))
    text = (tmp_path / "run" / "README.md").read_text()
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "diffusers" and meta["pipeline_tag"] == "image-to-image"
    assert meta["license"] == "cc0-1.0" and {"condiff", "canny", "pixel-art"} <= set(meta["tags"])
    assert "| canny | condiff | 0.1 | low_threshold=100, high_threshold=200, resize=bicubic |" in body
    assert "![final samples](samples/final.png)" in body and (tmp_path / "run" / "samples" / "final.png").is_file()
    assert "Palette (saved in denoiser/config.json, see docs/sample.md): palette: the data's " in body
    recipe = yaml.safe_load(body.split("```yaml", 1)[1].split("```", 1)[0])
    assert recipe["train"]["max_steps"] == 2 and recipe["conditions"][0]["name"] == "canny"
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip() == text.strip()
    assert main(["info", str(tmp_path / "absent")]) == 2


def test_overwrite_starts_fresh_tensorboard_logs_after_a_run_killed_before_its_first_checkpoint(tmp_path):
    recipe, run = write_tiny_recipe(tmp_path, max_steps=2, tensorboard=True)
    stale = run / "logs" / "condiff" / "events.out.tfevents.0.stale"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"points of a killed run")
    assert main(["train", str(recipe), "--overwrite"]) == 0
    assert not stale.exists() and list((run / "logs").rglob("events.out.tfevents.*"))
