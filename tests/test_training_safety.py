"""What a red-team trial found in `condiff train`, one class per section; each ends in one line and exit 2,
or goes on safely and says so, and never loses or silently replaces what a run wrote.

1. two runs into one train.output_dir: the second is refused while the first holds the folder;
2. a pickle payload planted in a checkpoint never runs on resume;
3. a damaged checkpoint file is found by its checksum: `latest` falls back to the previous checkpoint,
   a checkpoint asked for by name stops; an old checkpoint without checksums resumes with a notice;
4. --overwrite (or a resume) onto a read-only folder;
5. an empty train.output_dir.

One tiny run (4 steps, checkpoints at steps 2 and 4) is trained once; each test works on a copy.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from condiff.cli.main import main
from tests.conftest import four_step_values, start_training, train_fails, train_succeeds
from tests.test_training import assert_same

fcntl = pytest.importorskip("fcntl")  # Unix only, as the lock itself

STEP_2, STEP_4 = "checkpoints/step-00000002", "checkpoints/step-00000004"
PICKLED = ["custom_checkpoint_0.pkl", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"]
MANIFEST = "checksums.json"


# --- helpers ---------------------------------------------------------------------------------------


def copy_run(reference: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the reference run and a recipe that trains into it."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(run)))
    return recipe, run


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its SHA-256: what must stay as it was."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refresh_checksums(checkpoint: Path) -> None:
    """What someone handing over a doctored folder would do: make its checksums match again."""
    manifest = checkpoint / MANIFEST
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        saved["sha256"] = {name: hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
                           for name in saved["sha256"]}
        manifest.write_text(json.dumps(saved))


def assert_resumed_exactly(run: Path, reference: Path) -> None:
    """The run's step-4 checkpoint equals the uninterrupted run's: weights, optimizer, schedule, EMA."""
    a, b = load_file(str(run / STEP_4 / "model.safetensors")), load_file(str(reference / STEP_4 / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("optimizer.bin", "scheduler.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl"):
        x = torch.load(run / STEP_4 / name, weights_only=False)  # written by this test's own runs
        y = torch.load(reference / STEP_4 / name, weights_only=False)
        assert_same(x, y)
    saved = [json.loads((folder / STEP_4 / "trainer_state.json").read_text()) for folder in (run, reference)]
    assert saved[0]["loss_history"] == saved[1]["loss_history"]


# --- 1. one run per output folder ------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_trains(tmp_path, capsys):
    """The reproduction: two `condiff train` into one folder; the second must not train over the first.

    The first runs in a process of its own; the second in this one (it starts in a fraction of the time).
    """
    run = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(run)))
    # The first run trains for long and writes nothing after its recipe until it ends.
    first = start_training(recipe, tmp_path / "first.log", "--set", "train.max_steps=100000",
                           "--set", "train.checkpoint_every=0")
    try:
        deadline = time.time() + 120
        while not (run / "recipe.yaml").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        first.send_signal(signal.SIGSTOP)  # paused mid-run it still holds the folder, and leaves the cores free
        before = snapshot(run)
        error = train_fails(capsys, str(recipe), "--set", "train.max_steps=2")  # the second run, in this process
        assert f"train.output_dir {run} is in use by another training run (PID {first.pid})" in error
        assert "choose another train.output_dir" in error
        assert snapshot(run) == before and first.poll() is None  # nothing written; the first run goes on
    finally:
        first.kill()
        first.wait()
    # Killed, the first run leaves no lock behind that blocks the next run.
    train_succeeds(capsys, str(recipe), "--set", "train.max_steps=1")
    assert not (run / ".lock").exists() and (run / "model_index.json").exists()


@contextlib.contextmanager
def held_lock(run: Path, pid: int = 4242):
    """The lock of a run that is training now (as another process would hold it)."""
    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.truncate(0)
        handle.write(f"{pid}\n")
        handle.flush()
        yield


@pytest.mark.parametrize("argv", [[], ["--overwrite"], ["--set", "train.resume=latest"],
                                  ["--overwrite", "--set", "train.resume=latest"]])
def test_a_busy_output_folder_is_left_alone(reference, tmp_path, capsys, argv):
    recipe, run = copy_run(reference, tmp_path)
    with held_lock(run):
        before = snapshot(run)
        error = train_fails(capsys, str(recipe), *argv)
        assert snapshot(run) == before  # not a file deleted, replaced or added
    assert f"train.output_dir {run} is in use by another training run (PID 4242)" in error


def test_a_busy_new_folder_is_refused_and_the_next_run_trains(tmp_path, capsys):
    run = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(run)))
    with held_lock(run, pid=77):
        error = train_fails(capsys, str(recipe))
        assert "(PID 77)" in error and sorted(p.name for p in run.iterdir()) == [".lock"]
    # A lock file nobody holds (its run was killed) does not block; a finished run removes it.
    train_succeeds(capsys, str(recipe), "--set", "train.max_steps=1")
    assert not (run / ".lock").exists() and (run / "model_index.json").exists()


def test_a_refused_run_leaves_no_folder_behind(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(tmp_path / "new" / "run")))
    error = train_fails(capsys, str(recipe), "--set", "train.resume=latest")
    assert "no checkpoint" in error and not (tmp_path / "new").exists()


# --- 2. no code runs on resume ---------------------------------------------------------------------


class Payload:
    """Unpickled, it creates a folder: proof that the checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def plant_payload(path: Path, marker: Path) -> None:
    """Add the payload to a checkpoint's own pickled state (and make its checksums match again)."""
    state = torch.load(path, weights_only=False)  # the test's own, trusted file
    if isinstance(state, dict):
        state["extra"] = Payload(marker)
    else:
        state = {"state": state, "extra": Payload(marker)}
    torch.save(state, path)
    refresh_checksums(path.parent)


@pytest.mark.parametrize("name", PICKLED)
def test_a_pickle_payload_in_a_checkpoint_never_runs(reference, tmp_path, capsys, name):
    recipe, run = copy_run(reference, tmp_path)
    marker = tmp_path / "payload-ran"
    for step in (STEP_2, STEP_4):
        plant_payload(run / step / name, marker)
    before = snapshot(run)
    error = train_fails(capsys, str(recipe), "--set", "train.resume=latest")
    assert not marker.exists()
    assert name in error and "could run code" in error
    assert snapshot(run) == before
    # Asked for by name: the same refusal.
    error = train_fails(capsys, str(recipe), "--set", f"train.resume={run / STEP_4}")
    assert not marker.exists() and f"{run / STEP_4 / name}" in error and "could run code" in error


def test_latest_skips_a_checkpoint_with_a_payload_and_resumes_exactly(reference, tmp_path, capsys):
    recipe, run = copy_run(reference, tmp_path)
    marker = tmp_path / "payload-ran"
    plant_payload(run / STEP_4 / "custom_checkpoint_0.pkl", marker)
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    assert not marker.exists()
    notice = [line for line in out.splitlines() if "custom_checkpoint_0.pkl" in line]
    assert len(notice) == 1 and f"resuming from the previous checkpoint {run / STEP_2}" in notice[0]
    assert_resumed_exactly(run, reference)


def test_accelerate_loads_are_weights_only_during_a_resume(reference, tmp_path):
    """Past the checks, too: accelerate's own full unpickling of custom objects cannot run the payload."""
    from accelerate.checkpointing import load_custom_state

    from condiff.training.checkpoints import weights_only_loads

    _, run = copy_run(reference, tmp_path)
    marker = tmp_path / "payload-ran"
    plant_payload(run / STEP_4 / "custom_checkpoint_0.pkl", marker)

    class Sink:
        def load_state_dict(self, state):
            pass

    with weights_only_loads(), pytest.raises(Exception, match="(?i)weights.only"):
        load_custom_state(Sink(), str(run / STEP_4), 0)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # put back as it was


# --- 3. damaged checkpoints ------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = [("optimizer.bin", truncate), ("scheduler.bin", truncate), ("custom_checkpoint_0.pkl", truncate),
          ("random_states_0.pkl", truncate), ("trainer_state.json", truncate), ("model.safetensors", truncate),
          ("random_states_0.pkl", flip_a_byte), ("model.safetensors", flip_a_byte)]


@pytest.mark.parametrize("name, damage", DAMAGE, ids=[f"{n}-{d.__name__}" for n, d in DAMAGE])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys, name, damage):
    recipe, run = copy_run(reference, tmp_path)
    damage(run / STEP_4 / name)
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    notice = [line for line in out.splitlines() if str(run / STEP_4) in line]
    assert len(notice) == 1, out
    assert f"{run / STEP_4 / name}" in notice[0]
    assert f"resuming from the previous checkpoint {run / STEP_2}" in notice[0]
    assert f"resumed from {run / STEP_2} at step 2" in out
    assert_resumed_exactly(run, reference)  # the damaged checkpoint was trained again, bit for bit


@pytest.mark.parametrize("name", ["optimizer.bin", "random_states_0.pkl", "trainer_state.json", "checksums.json"])
def test_a_damaged_checkpoint_asked_for_by_name_stops(reference, tmp_path, capsys, name):
    recipe, run = copy_run(reference, tmp_path)
    truncate(run / STEP_4 / name)
    before = snapshot(run)
    error = train_fails(capsys, str(recipe), "--set", f"train.resume={run / STEP_4}")
    assert f"{run / STEP_4 / name}" in error
    assert snapshot(run) == before


def test_latest_with_every_checkpoint_damaged_stops(reference, tmp_path, capsys):
    recipe, run = copy_run(reference, tmp_path)
    truncate(run / STEP_4 / "optimizer.bin")
    flip_a_byte(run / STEP_2 / "random_states_0.pkl")
    before = snapshot(run)
    error = train_fails(capsys, str(recipe), "--set", "train.resume=latest")
    assert f"{run / STEP_2 / 'random_states_0.pkl'}" in error and "--overwrite" in error
    assert snapshot(run) == before


def test_a_file_added_to_a_checkpoint_is_noticed(reference, tmp_path, capsys):
    recipe, run = copy_run(reference, tmp_path)
    torch.save({}, run / STEP_4 / "custom_checkpoint_1.pkl")
    error = train_fails(capsys, str(recipe), "--set", f"train.resume={run / STEP_4}")
    assert f"{run / STEP_4 / 'custom_checkpoint_1.pkl'}" in error


def test_a_checkpoint_of_more_processes_is_not_resumed_by_fewer(reference, tmp_path, capsys):
    """Another data split, batch size and LR schedule pace: not the same training."""
    recipe, run = copy_run(reference, tmp_path)
    for step in (STEP_2, STEP_4):
        shutil.copy(run / step / "random_states_0.pkl", run / step / "random_states_1.pkl")
        json_path = run / step / MANIFEST
        saved = json.loads(json_path.read_text())
        saved["sha256"]["random_states_1.pkl"] = saved["sha256"]["random_states_0.pkl"]
        json_path.write_text(json.dumps(saved))
    error = train_fails(capsys, str(recipe), "--set", "train.resume=latest")
    assert "was saved by 2 process(es), this run has 1" in error and "--num_processes 2" in error


def test_an_old_checkpoint_without_checksums_resumes_with_a_notice(reference, tmp_path, capsys):
    recipe, run = copy_run(reference, tmp_path)
    shutil.rmtree(run / STEP_4)  # resume from step 2, then train to step 4
    (run / STEP_2 / MANIFEST).unlink(missing_ok=True)
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    notice = [line for line in out.splitlines() if "cannot be verified" in line]
    assert len(notice) == 1 and str(run / STEP_2) in notice[0]
    assert_resumed_exactly(run, reference)


def test_an_old_checkpoint_with_a_damaged_random_state_is_not_resumed_silently(reference, tmp_path, capsys):
    recipe, run = copy_run(reference, tmp_path)
    for step in (STEP_2, STEP_4):
        (run / step / MANIFEST).unlink(missing_ok=True)
    truncate(run / STEP_4 / "random_states_0.pkl")
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    assert any(str(run / STEP_4 / "random_states_0.pkl") in line and "resuming from the previous checkpoint" in line
               for line in out.splitlines()), out
    assert_resumed_exactly(run, reference)


def test_every_checkpoint_has_checksums_of_all_its_files(reference):
    for step in (STEP_2, STEP_4):
        saved = json.loads((reference / step / MANIFEST).read_text())["sha256"]
        files = {p.name for p in (reference / step).iterdir()} - {MANIFEST}
        assert set(saved) == files and "random_states_0.pkl" in files
        assert all(saved[n] == hashlib.sha256((reference / step / n).read_bytes()).hexdigest() for n in files)


# --- 4. a read-only output folder ------------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """Every change under `folder` fails with EROFS, as on a read-only mount (as root, chmod cannot do it)."""
    folder = folder.resolve()
    real = {name: getattr(os, name) for name in ("open", "mkdir", "unlink", "remove", "rmdir", "replace", "rename")}
    real_open = builtins.open

    def inside(path, dir_fd=None) -> bool:
        path = os.fsdecode(path) if not isinstance(path, int) else None
        if path is None:
            return False
        if dir_fd is not None and not os.path.isabs(path):
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        path = os.path.abspath(path)
        return path == str(folder) or path.startswith(str(folder) + os.sep)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def guarded(name):
        def call(path, *args, **kwargs):
            writes = name != "open" or args[0] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            targets = [path, *args[:1]] if name in ("replace", "rename") else [path]
            if writes and any(inside(t, kwargs.get("dir_fd")) for t in targets):
                refuse(path)
            return real[name](path, *args, **kwargs)
        return call

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not isinstance(file, int) and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for name in real:
            patch.setattr(os, name, guarded(name))
        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(io, "open", guarded_open)
        yield


@pytest.mark.parametrize("argv", [["--overwrite"], ["--overwrite", "--set", "train.resume=latest"],
                                  ["--set", "train.resume=latest"]])
def test_a_read_only_output_folder_is_one_line(reference, tmp_path, capsys, argv):
    recipe, run = copy_run(reference, tmp_path)
    before = snapshot(run)
    with read_only(run):
        capsys.readouterr()
        code = main(["train", str(recipe), *argv])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in err and err.count("condiff: error:") == 1, err
    error = err.strip().splitlines()[-1]
    assert f"train.output_dir {run} is not writable (Read-only file system)" in error
    assert "resumed from" not in out  # nothing is said to have happened that did not
    assert snapshot(run) == before


def test_a_new_run_under_a_read_only_folder_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(tmp_path / "disk" / "run")))
    (tmp_path / "disk").mkdir()
    with read_only(tmp_path / "disk"):
        error = train_fails(capsys, str(recipe))
    assert f"train.output_dir {tmp_path / 'disk' / 'run'} is not writable (Read-only file system)" in error
    assert list((tmp_path / "disk").iterdir()) == []


# --- 5. an empty output_dir ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["recipe", "recipe-blank", "--set"])
def test_an_empty_output_dir_is_refused(tmp_path, capsys, monkeypatch, how):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("the user's own file")
    monkeypatch.chdir(home)
    values = four_step_values(tmp_path / "run")
    values["train"]["output_dir"] = "   " if how == "recipe-blank" else ""
    if how == "--set":
        values["train"]["output_dir"] = str(tmp_path / "run")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(values))
    argv = ["--set", 'train.output_dir=""'] if how == "--set" else []
    error = train_fails(capsys, str(recipe), *argv)
    assert "tiny.yaml" in error and "train.output_dir is empty" in error and "outputs/run" in error
    assert [p.name for p in home.iterdir()] == ["notes.txt"] and not (tmp_path / "run").exists()


def test_an_output_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "run").write_text("the user's own file")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(four_step_values(tmp_path / "run")))
    error = train_fails(capsys, str(recipe))
    assert f"train.output_dir {tmp_path / 'run'} is a file" in error
    assert (tmp_path / "run").read_text() == "the user's own file"
