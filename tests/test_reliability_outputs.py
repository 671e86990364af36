"""Issue 43: the writing commands' outputs. A folder is held by one run at a time; outputs never collide with
each other or with an input, compared resolved; files in an output folder are never replaced; an input the
conditions refuse is named and nothing is written; SIGTERM is Ctrl-C; names stay on one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.configuration_utils import register_to_config
from PIL import Image

import condiff
from condiff import ConditionEncoder, register_condition
from condiff.cli.main import main
from condiff.errors import CondiffError
from tests.conftest import one_line_error, save_untrained_models

SRC = Path(condiff.__file__).parents[1]  # the condiff under test, for child processes too


# --- toy condition plugins ----------------------------------------------------------------------


class Toy(ConditionEncoder):
    """A plugin without settings (docs/plugins.md): one channel."""

    channels = 1

    @register_to_config
    def __init__(self) -> None:
        super().__init__()


def _darkness(image: Image.Image) -> float:
    return 255.0 - float(np.asarray(image.convert("L")).mean())


@register_condition("test-rel-refuses-dark")
class RefusesDark(Toy):
    """Refuses a dark input as the plugin contract asks: a CondiffError."""

    def encode_input(self, image, resolution):
        if _darkness(image) > 192:
            raise CondiffError("too dark for this condition; brighten it")
        return torch.zeros(1, 1, resolution, resolution)


@register_condition("test-rel-bug")
class BuggyOnDark(Toy):
    """A plugin with a bug that shows on dark inputs only."""

    def encode_input(self, image, resolution):
        if _darkness(image) > 192:
            raise ValueError("a bug in the plugin")
        return torch.zeros(1, 1, resolution, resolution)


@register_condition("test-rel-two-rows")
class TwoRows(Toy):
    """Returns a batch of two for one image."""

    def encode_input(self, image, resolution):
        return torch.zeros(2, 1, resolution, resolution)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    gray = {"name": "grayscale"}
    return save_untrained_models(root, {
        "unconditional": [], "colorize": [gray],
        "refuses-dark": [gray, {"name": "test-rel-refuses-dark"}], "bug": [gray, {"name": "test-rel-bug"}],
        "two-rows": [{"name": "test-rel-two-rows"}],
    })


def gray_images(folder: Path, count: int, level: int = 200, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = []
    for index in range(count):
        pixels = np.clip(rng.normal(level, 20, (32, 32)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{chr(ord('a') + index % 26)}{index // 26 or ''}{suffix}")
        Image.fromarray(pixels, "L").save(paths[-1])
    return paths


def start_condiff(*args: str, log: Path) -> subprocess.Popen:
    """`python -m condiff ARGS` in a child process of the condiff under test, its output to `log`."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "condiff", *args], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    """Poll until `condition()` holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the first run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def files_under(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file under `root` (links not followed) with its size and modification time."""
    entries = {}
    for top, _, files in os.walk(root):
        for name in files:
            info = (Path(top) / name).lstat()
            entries[Path(top) / name] = (info.st_size, info.st_mtime_ns)
    return entries


def unchanged(tmp_path: Path, before: dict) -> None:
    """No file under `tmp_path` was written, replaced or removed since `before = files_under(tmp_path)`."""
    after = files_under(tmp_path)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


# --- 43.1: a folder is held by one run at a time ------------------------------------------------


@pytest.mark.parametrize("second", ["same command", "another command"])
@pytest.mark.parametrize("command", ["sample", "colorize"])
def test_a_second_run_into_a_held_folder_is_refused_and_writes_nothing(models, tmp_path, capsys, command, second):
    if command == "sample":
        held = tmp_path / "cc"
        first = ["sample", "--model", str(models["unconditional"]), "--num", "3", "--steps", "2", "--seed", "0",
                 "--out-dir", str(held)]
        seconds = {"same command": [*first[:-3], "100", "--out-dir", str(held)],
                   "another command": ["colorize", *map(str, gray_images(tmp_path / "in", 2)),
                                       "--model", str(models["colorize"]), "--out-dir", str(held)]}
    else:
        gray_images(tmp_path / "grays", 3)
        held = tmp_path / "grays-colorized"
        first = ["colorize", str(tmp_path / "grays"), "--model", str(models["colorize"]), "--steps", "2"]
        seconds = {"same command": [*first, "--seed", "100"],
                   "another command": ["sample", "--model", str(models["unconditional"]), "--num", "2",
                                       "--out-dir", str(held)]}
    process = start_condiff(*first, log=tmp_path / "first.log")
    try:
        wait_for(lambda: (held / ".lock").exists() and (held / ".lock").read_text().strip() == str(process.pid),
                 process, "it held the folder")
        process.send_signal(signal.SIGSTOP)  # the first run holds the folder while the second tries
        error = one_line_error(capsys, seconds[second], f"{held} is in use by another condiff run (PID {process.pid})")
        assert "wait for it to finish" in error
        process.send_signal(signal.SIGCONT)
        assert process.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
    finally:
        process.kill()
        process.wait()
    # Only the first run's files, as the same command alone writes them.
    alone = tmp_path / "alone"
    if command == "sample":
        assert main([*first[:-1], str(alone)]) == 0
        expected = sorted(p.name for p in alone.iterdir())
    else:
        assert main([*first, "--out-dir", str(alone)]) == 0
        expected = ["a-colorized.png", "b-colorized.png", "c-colorized.png"]
    assert sorted(p.name for p in held.iterdir()) == expected
    for name in expected:
        assert np.array_equal(np.asarray(Image.open(held / name)), np.asarray(Image.open(alone / name))), name


# --- 43.2 and 43.3: outputs never collide, compared resolved -------------------------------------


def test_outputs_of_one_command_never_collide(models, tmp_path, capsys):
    model = ["--model", str(models["unconditional"]), "--steps", "1"]
    folder = tmp_path / "d"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    (tmp_path / "x").mkdir()
    before = files_under(tmp_path)
    for out in (folder / "00000.png", tmp_path / "link" / "00001.png", tmp_path / "x" / ".." / "d" / "00000.png"):
        one_line_error(capsys, ["sample", *model, "--num", "2", "--out-dir", str(folder), "--out", str(out)],
                       "--out and --out-dir would both write")
        unchanged(tmp_path, before)
    one_line_error(capsys, ["sample", *model, "--num", "2", "--out-dir", str(folder / ".." / "link"),
                            "--out", str(folder / "00001.png")], "would both write")
    unchanged(tmp_path, before)


def test_outputs_are_compared_resolved_with_each_other_and_with_the_inputs(models, tmp_path, capsys):
    model = ["--model", str(models["colorize"]), "--steps", "1"]
    folder = tmp_path / "f"
    gray_images(folder, 1)  # f/a.png
    gray_images(folder, 1, suffix=".jpg")  # f/a.jpg
    (tmp_path / "g").symlink_to(folder)
    before = files_under(tmp_path)
    for inputs in ([folder / "a.png", folder / ".." / "f" / "a.jpg"],  # the case
                   [folder / "a.png", tmp_path / "g" / "a.jpg"],  # the same folder through a symlink
                   [folder, folder / ".." / "f"]):  # one input folder twice: one FOLDER-colorized/
        one_line_error(capsys, ["colorize", *map(str, inputs), *model], "would both write")
        unchanged(tmp_path, before)
    # Against the inputs: an output that is an input through a symlink, the extra outputs included.
    one_line_error(capsys, ["colorize", str(folder / "a.png"), *model, "--out", str(tmp_path / "g" / "a.png")],
                   "input")
    gray_images(folder / "more", 1)[0].rename(folder / "z-fullres.png")
    before = files_under(tmp_path)
    one_line_error(capsys, ["colorize", str(folder / "z-fullres.png"), *model, "--full-res", "--out",
                            str(tmp_path / "g" / "z.png")], "input")
    unchanged(tmp_path, before)


# --- 43.4: files in an output folder are never replaced -----------------------------------------


def test_files_already_in_an_output_folder_are_never_replaced(models, tmp_path, capsys):
    model = ["--model", str(models["colorize"]), "--steps", "1"]
    gray_images(tmp_path / "grays", 2)  # a.png, b.png
    outputs, chosen = tmp_path / "grays-colorized", tmp_path / "chosen"
    cases = [
        (outputs / "b-colorized.png", [], "or write into another folder with --out-dir"),
        (outputs / "a-colorized-fullres.png", ["--full-res"], "--out-dir"),
        (outputs / "a-colorized-1.png", ["--num", "2"], "--out-dir"),
        (outputs / "a-colorized.gif", ["--gif"], "--out-dir"),
        (chosen / "a-colorized.png", ["--out-dir", str(chosen)], "or choose another --out-dir"),
    ]
    for existing, options, fix in cases:
        existing.parent.mkdir(exist_ok=True)
        existing.write_bytes(b"the user's own file")
        before = files_under(tmp_path)
        error = one_line_error(capsys, ["colorize", str(tmp_path / "grays"), *model, *options],
                               f"{existing}: already exists; remove it")
        assert fix in error
        unchanged(tmp_path, before)
        existing.unlink()
    # Other files there stay, and do not stop the run.
    (outputs / "notes.txt").write_text("mine")
    assert main(["colorize", str(tmp_path / "grays"), *model]) == 0
    assert sorted(p.name for p in outputs.iterdir()) == ["a-colorized.png", "b-colorized.png", "notes.txt"]


# --- 43.9: an input the conditions refuse is named; nothing is written ---------------------------


def test_an_input_a_plugin_refuses_is_named_and_nothing_is_written(models, tmp_path, capsys):
    folder = tmp_path / "grays"
    gray_images(folder, 3)  # a, b, c
    gray_images(tmp_path / "dark", 1, level=10)[0].rename(folder / "b.png")
    (tmp_path / "dark").rmdir()
    before = files_under(tmp_path)
    # A plugin's CondiffError for the middle input of a folder: one line naming it, no output at all.
    for outputs in ([], ["--out-dir", str(tmp_path / "chosen")]):
        error = one_line_error(capsys, ["colorize", str(folder), "--model", str(models["refuses-dark"]),
                                        "--steps", "1", *outputs], "too dark for this condition")
        assert str(folder / "b.png") in error
        unchanged(tmp_path, before)
    # A plugin returning a batch of two for one image: one line naming the input, not a zip() traceback.
    error = one_line_error(capsys, ["generate", "--model", str(models["two-rows"]), "--input", str(folder / "a.png"),
                                    "--steps", "1", "--num", "2"], "test-rel-two-rows")
    assert str(folder / "a.png") in error
    unchanged(tmp_path, before)
    # A plugin's bug is a traceback (the plugin contract), with a note naming the input; nothing written.
    with pytest.raises(ValueError, match="a bug in the plugin") as raised:
        main(["colorize", str(folder), "--model", str(models["bug"]), "--steps", "1"])
    assert any(str(folder / "b.png") in note for note in getattr(raised.value, "__notes__", []))
    unchanged(tmp_path, before)


# --- 43.10: SIGTERM is Ctrl-C; a killed run's leftovers do not fill a folder ----------------------


@pytest.mark.parametrize("command", ["sample", "colorize"])
def test_sigterm_mid_run_leaves_nothing_and_the_run_can_be_repeated(models, tmp_path, command):
    if command == "sample":
        folder = tmp_path / "d"
        argv = ["sample", "--model", str(models["unconditional"]), "--num", "300", "--steps", "1",
                "--out-dir", str(folder)]
    else:
        gray_images(tmp_path / "grays", 60)
        folder = tmp_path / "grays-colorized"
        argv = ["colorize", str(tmp_path / "grays"), "--model", str(models["colorize"]), "--steps", "2"]
    log = tmp_path / "run.log"
    process = start_condiff(*argv, log=log)
    try:
        wait_for(lambda: folder.exists() and any(p.name != ".lock" for p in folder.iterdir()), process,
                 "it wrote a file")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    output = log.read_text()
    assert code == 128 + signal.SIGTERM and output.strip().endswith("condiff: interrupted (SIGTERM)"), output
    assert not folder.exists() or list(folder.iterdir()) == [], sorted(p.name for p in folder.iterdir())
    small = ["--num", "2"] if command == "sample" else []
    assert main([*argv, *small]) == 0  # the same command again


def test_a_killed_runs_leftovers_do_not_make_a_folder_count_as_full(models, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / ".00000.png.0badf00d.tmp.png").write_bytes(b"")  # a write cut short by SIGKILL
    (folder / ".lock").write_text("4242\n")  # the lock file of a killed run: unlocked
    assert main(["sample", "--model", str(models["unconditional"]), "--num", "2", "--steps", "1",
                 "--out-dir", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["00000.png", "00001.png"]


# --- 43.12: NAME=PATH prefers an existing file; every name stays on one line ---------------------


def test_generate_inputs_prefer_an_existing_file_and_take_any_condition_name(models, tmp_path, capsys):
    image = gray_images(tmp_path, 1)[0]
    odd = image.rename(tmp_path / "x=1.png")  # a file whose name holds "="
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(models["colorize"]), "--input", str(odd), "--steps", "1",
                 "--out", str(out)]) == 0
    assert out.exists()
    # A condition name that is not a Python identifier (plugins may use any name).
    both = tmp_path / "both.png"
    assert main(["generate", "--model", str(models["refuses-dark"]), "--input", f"grayscale={odd}",
                 "--input", f"test-rel-refuses-dark={odd}", "--steps", "1", "--out", str(both)]) == 0
    assert both.exists()
    # Neither reading names a file: one line saying both.
    capsys.readouterr()
    one_line_error(capsys, ["generate", "--model", str(models["colorize"]), "--input", "grayscale=missing.png"],
                   "neither a file grayscale=missing.png nor, for condition grayscale, a file missing.png")


def test_names_with_control_characters_stay_on_one_line(models, tmp_path, capsys):
    image = gray_images(tmp_path, 1)[0]
    fake = "\ncondiff: wrote out.png"
    # A condition name and a file name holding a newline: each error is one line, the newline escaped.
    for argv in (["generate", "--model", str(models["colorize"]), "--input", f"gray{fake}={image}", "--steps", "1"],
                 ["colorize", str(tmp_path / f"missing{fake}.png"), "--model", str(models["colorize"])]):
        error = one_line_error(capsys, argv, "\\ncondiff: wrote out.png")
        assert "\x1b" not in error
    # What a command says it wrote is one line too.
    out = tmp_path / "new\nline\x1b[2J.png"
    assert main(["colorize", str(image), "--model", str(models["colorize"]), "--steps", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said == ["condiff: wrote " + str(out).replace("\n", "\\n").replace("\x1b", "\\x1b")], said
    assert out.exists()
