"""SIGKILL at random moments, mostly mid-checkpoint: the latest complete checkpoint always loads and resumes."""

import json
import random
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from condiff.training.checkpoints import list_checkpoints
from tests.conftest import start_training, tiny_values

TRIALS = 10  # at least; more (up to MAX_TRIALS) until MIN_MID_SAVE kills have landed mid-checkpoint
MAX_TRIALS, MIN_MID_SAVE = 20, 2


def assert_loadable(checkpoint: Path) -> None:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == int(checkpoint.name.split("-")[1])
    assert load_file(str(checkpoint / "model.safetensors"))
    torch.load(checkpoint / "optimizer.bin", weights_only=False)  # the run's own file


@pytest.mark.slow
def test_random_kills_never_leave_a_partial_latest(tmp_path):
    rng = random.Random(0)
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    # A checkpoint after every step: most of the run's time is spent writing checkpoints.
    recipe.write_text(yaml.safe_dump(tiny_values(out, max_steps=400, checkpoint_every=1, keep_checkpoints=2)))
    survived, mid_save = 0, 0
    for trial in range(MAX_TRIALS):
        if trial >= TRIALS and mid_save >= MIN_MID_SAVE:
            break
        log = tmp_path / f"trial-{trial}.log"
        process = start_training(recipe, resume=bool(list_checkpoints(out)), log=log)
        # Wait until this process has written a checkpoint of its own, then kill at a random moment.
        before = list_checkpoints(out)[-1].name if list_checkpoints(out) else None
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            found = list_checkpoints(out)
            if found and found[-1].name != before:
                break
            time.sleep(0.05)
        assert process.poll() is None, log.read_text()[-2000:]
        if trial % 2:  # aim: kill just after a checkpoint write has begun
            while time.time() < deadline and process.poll() is None and not any(
                    p.name.startswith(".partial-") for p in (out / "checkpoints").iterdir()):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # anywhere in the step/checkpoint cycle
            time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        mid_save += any(p.name.startswith(".partial-") for p in (out / "checkpoints").iterdir())
        found = list_checkpoints(out)
        assert found, f"trial {trial}: no complete checkpoint"
        assert len(found) <= 3  # keep-last-2, plus at most one not yet pruned when killed
        assert_loadable(found[-1])
        survived += 1
    # Finally the run resumes from the latest checkpoint and finishes.
    values = yaml.safe_load(recipe.read_text())
    last_step = int(list_checkpoints(out)[-1].name.split("-")[1])
    values["train"]["max_steps"] = last_step + 2
    recipe.write_text(yaml.safe_dump(values))
    process = start_training(recipe, resume=True, log=tmp_path / "final.log")
    assert process.wait(timeout=300) == 0, (tmp_path / "final.log").read_text()[-2000:]
    assert mid_save >= MIN_MID_SAVE, f"only {mid_save} of {survived} kills landed while a checkpoint was written"
    print(f"{survived} kills survived, {mid_save} of them while a checkpoint was being written")
