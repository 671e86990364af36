"""Shared fixtures and helpers: a tiny recipe that trains in seconds on the CPU, untrained tiny models,
condiff run in this process or in a child one, and what lies under a folder. Test modules import the
helpers with `from tests.conftest import ...`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from condiff.cli.main import main
from condiff.config import ModelConfig, SchedulerConfig, recipe_from_dict

ROOT = Path(__file__).parents[1]

# Tests run on 2 shared cores: more threads only contend.
torch.set_num_threads(1)

# --- tiny recipes ------------------------------------------------------------------------------------------

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


def four_step_values(output_dir, **train):
    """The tiny recipe on 8 images for 4 steps, with checkpoints at steps 2 and 4."""
    values = tiny_values(output_dir, max_steps=4, checkpoint_every=2, **train)
    values["data"] = {**values["data"], "size": 8}
    return values


@pytest.fixture
def tiny_recipe(tmp_path):
    return recipe_from_dict(tiny_values(tmp_path / "run"))


def write_tiny_recipe(folder: Path, make_values=tiny_values, **train) -> tuple[Path, Path]:
    """`make_values(folder / "run", **train)` written to folder/tiny.yaml; returns the recipe file and the
    run's folder."""
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(make_values(folder / "run", **train)))
    return recipe, folder / "run"


def write_recipe_text(folder: Path, text: str, name: str = "r.yaml") -> Path:
    """A recipe file with exactly this text (so also malformed YAML)."""
    path = folder / name
    path.write_text(text)
    return path


# --- untrained tiny models ---------------------------------------------------------------------------------


def save_untrained_models(root: Path, models: dict[str, list[dict]], model: ModelConfig | None = None,
                          scheduler: SchedulerConfig | None = None) -> dict[str, Path]:
    """Random 32-pixel models saved as `condiff train` saves them, one folder under `root` per name in
    `models`, which gives its conditions as a recipe lists them (none: unconditional). By default a UNet of
    two levels of 32 channels without attention, and 50 timesteps. Seeded, in the order given: the same call
    saves the same weights."""
    model = model or ModelConfig(channels=[32, 32], attention=[False, False])
    scheduler = scheduler or SchedulerConfig(num_train_timesteps=50)
    from condiff.conditions.stack import ConditionStack
    from condiff.model import IMAGE_CHANNELS, build_scheduler, build_unet
    from condiff.model_folder import save_model

    noise_schedule = build_scheduler(scheduler)
    torch.manual_seed(0)
    folders = {}
    for name, conditions in models.items():
        folders[name] = root / name
        if conditions:
            stack = ConditionStack(conditions)
            unet = build_unet(model, 32, in_channels=IMAGE_CHANNELS + stack.channels)
            save_model(folders[name], unet, noise_schedule, stack)
        else:
            save_model(folders[name], build_unet(model, 32), noise_schedule)
    return folders


# --- condiff in this process -------------------------------------------------------------------------------


def one_line_error(capsys, argv, fragment):
    """`condiff ARGV` exits 2 with one line `condiff: error: ...` containing `fragment`; returns the line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("condiff: error:") and "\n" not in err and "Traceback" not in err, err
    assert fragment in err, err
    return err


def train_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """`condiff train ARGV` through `main` in this process: its exit code, stdout and stderr."""
    capsys.readouterr()
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def train_fails(capsys, *argv: str) -> str:
    """`condiff train` exits 2 with one error line after the progress bar, and no traceback; returns that
    line."""
    code, out, err = train_in_process(capsys, *argv)
    assert code == 2, out + err
    assert "Traceback" not in err and err.count("condiff: error:") == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("condiff: error:"), err  # on a line of its own, not glued to the bar
    return last


def train_succeeds(capsys, *argv: str) -> str:
    """`condiff train` exits 0; returns what it printed."""
    code, out, err = train_in_process(capsys, *argv)
    assert code == 0, out + err
    return out


# --- condiff in a child process ----------------------------------------------------------------------------


def run_condiff_subprocess(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m condiff ARGS` in a child process, its output captured as text."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "condiff", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def start_training(recipe: Path, log: Path, *argv: str, resume: bool = False) -> subprocess.Popen:
    """`condiff train RECIPE ARGV` started in a child process (with `--set train.resume=latest` if `resume`).
    Output goes to `log`: a full pipe would stall a child that nobody reads while it runs."""
    args = [sys.executable, "-m", "condiff", "train", str(recipe), *argv]
    if resume:
        args += ["--set", "train.resume=latest"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)


# --- what lies under a folder ------------------------------------------------------------------------------


def paths_under(folder: Path) -> list[Path]:
    """Every path under `folder`, relative to it, sorted."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def stamps_under(root: Path) -> dict:
    """Every entry under `root` (links not followed) with its size and modification time."""
    entries = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            info = (Path(top) / name).lstat()
            entries[Path(top) / name] = (info.st_size, info.st_mtime_ns)
    return entries


# --- the suite leaves the working tree as it found it ------------------------------------------


def _tree_state() -> str | None:
    """`git status --porcelain` of the project (untracked files included), or None outside a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
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


@pytest.fixture
def condition_registry(monkeypatch):
    """condiff's condition registry, copied for one test: encoders it registers are gone afterwards."""
    from condiff.conditions import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A finished tiny run, trained once without interruption: 4 steps, checkpoints at steps 2 and 4."""
    tmp = tmp_path_factory.mktemp("reference")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(tmp / "run")))
    assert main(["train", str(recipe)]) == 0
    return tmp / "run"

