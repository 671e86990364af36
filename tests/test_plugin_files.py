"""A new task, steering step or built-in condition is one new file in its package (issue 39): nothing else
names it, yet the commands offer it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import condiff

PACKAGE = Path(condiff.__file__).parent

NEW_TASK = '''
from condiff.tasks.base import Task, register_task

ECHO = register_task(Task("echo", "grayscale", "an echo model", "echo an image back", "echoed", shipped=False))
'''
NEW_STEP = '''
from condiff.steering.base import SteeringOption

OPTION = SteeringOption("sharpen", ("auto", "off"), "auto sharpens the output; off leaves it")
'''


def run_cli(root: Path, *args: str) -> str:
    code = "import sys; from condiff.cli.main import main; sys.argv = ['condiff', *sys.argv[1:]]; main()"
    done = subprocess.run([sys.executable, "-c", code, *args], env={"PYTHONPATH": str(root), "PATH": ""},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_new_task_and_steering_step_are_one_file_each(tmp_path: Path) -> None:
    copy = tmp_path / "condiff"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("models", "__pycache__"))
    (copy / "tasks" / "echo.py").write_text(NEW_TASK, encoding="utf-8")
    (copy / "steering" / "sharpen.py").write_text(NEW_STEP, encoding="utf-8")

    assert "echo an image back" in run_cli(tmp_path, "--help")
    assert "auto sharpens the output" in run_cli(tmp_path, "echo", "--help")
    assert "--sharpen" in run_cli(tmp_path, "colorize", "--help")
    assert "--sharpen" not in run_cli(PACKAGE.parent, "colorize", "--help")  # the copy's files, not the tree's
