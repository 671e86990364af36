"""Shared fixtures: a tiny recipe that trains in seconds on the CPU."""

import pytest
import torch

from condiff.config import recipe_from_dict

# Tests run on 2 shared cores: more threads only contend.
torch.set_num_threads(1)

TINY = {
    "data": {"size": 32, "random_flip": True},
    "model": {"channels": [32, 32], "attention": [False, True], "layers_per_block": 1},
    "scheduler": {"num_train_timesteps": 50},
    "train": {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "sample_every": 0,
              "sample_num": 2, "sample_steps": 2, "checkpoint_every": 2, "keep_checkpoints": 2,
              "log_every": 1, "tensorboard": False},
}


def tiny_values(output_dir, **train):
    values = {section: dict(keys) for section, keys in TINY.items()}
    values["train"].update(output_dir=str(output_dir), **train)
    return values


@pytest.fixture
def tiny_recipe(tmp_path):
    return recipe_from_dict(tiny_values(tmp_path / "run"))


# --- the suite leaves the working tree as it found it ------------------------------------------


def _tree_state() -> str | None:
    """`git status --porcelain` of the project (untracked files included), or None outside a git checkout."""
    import subprocess
    from pathlib import Path

    try:
        done = subprocess.run(["git", "status", "--porcelain"], cwd=Path(__file__).parents[1], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._tree_before = _tree_state()


def pytest_sessionfinish(session, exitstatus):
    """Tests write into temporary folders only: a tracked or new file changed by the suite fails it."""
    before, after = getattr(session.config, "_tree_before", None), _tree_state()
    if before is not None and after is not None and after != before:
        changed = sorted(set(after.splitlines()) - set(before.splitlines()))
        print(f"\nthe test suite changed the working tree: {changed}")
        session.exitstatus = 1
