"""Every command's outputs go through one checked writer: a destination that cannot take a file is one
line before any work, and a write that fails midway (a full disk) is one line with nothing left behind."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condiff.cli.main import main
from tests.test_disk_full import file_size_limit

ROOT = Path(__file__).parents[1]
GRAY = ROOT / "docs" / "images" / "input-gray-noun.png"


def commands(out: str) -> dict[str, list[str]]:
    """Each command that writes a file, cheap settings, writing `out` (with the suffix it wants)."""
    png, gif, json = f"{out}.png", f"{out}.gif", f"{out}.json"
    return {
        "sample": ["sample", "--num", "1", "--steps", "1", "--out", png],
        "sample gif": ["sample", "--num", "1", "--steps", "1", "--out", str(Path(png).with_name("ok.png")),
                       "--gif", gif],
        "colorize": ["colorize", str(GRAY), "--steps", "1", "--out", png],
        "generate": ["generate", "--model", str(ROOT / "src/condiff/models/sketch2img"), "--input", str(GRAY),
                     "--steps", "1", "--out", png],
        "encode": ["encode", "--condition", "sketch", str(GRAY), "--out", png],
        "noise": ["noise", str(GRAY), "--out", png],
        "schedules": ["schedules", "--out", png],
        "data preview": ["data", "preview", "nouns", "--num", "4", "--out", png],
        "data export": ["data", "export", "nouns", "--num", "2", "--out", out],
        "eval": ["eval", "unconditional", "--num", "10", "--steps", "1", "--json", json],
    }


def bad_destinations(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-file").write_text("not a folder")
    return {
        "under /proc": "/proc/condiff-test/out",
        "under a file": str(tmp_path / "a-file" / "out"),
        "a name too long": str(tmp_path / ("x" * 300)),
    }


@pytest.mark.parametrize("command", list(commands("x")))
@pytest.mark.parametrize("where", ["under /proc", "under a file", "a name too long"])
def test_an_unwritable_destination_is_one_line_before_any_work(command, where, tmp_path, capsys, monkeypatch):
    import condiff.tasks

    def no_work(*args, **kwargs):
        raise AssertionError("the destination must be checked before any work")

    monkeypatch.setattr(condiff.tasks.Task, "load", no_work)
    out = bad_destinations(tmp_path)[where]
    assert main(commands(out)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("condiff: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["sample", "colorize", "encode", "noise", "data preview", "data export"])
def test_a_write_that_fails_midway_is_one_line_and_leaves_nothing(command, tmp_path, capsys):
    out = tmp_path / "result"
    with file_size_limit(200):  # a full disk, as the writer sees it: the file stops growing
        code = main(commands(str(out))[command])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("condiff: error:") and "File too large" in err, err
    left = [p.name for p in tmp_path.iterdir()]
    assert left == [], left  # no output, no temporary file


def test_a_good_destination_still_works(tmp_path):
    out = tmp_path / "new" / "folder" / "grid.png"
    assert main(["encode", "--condition", "grayscale", str(GRAY), "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape[0] > 0
