"""The command line: fast help, user mistakes as one-line errors (exit 2, nothing written)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condiff.cli.main import main
from tests.conftest import one_line_error, run_condiff_subprocess

ROOT = Path(__file__).parents[1]


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t = time.perf_counter(); from condiff.cli.main import build_parser; "
            "build_parser(); print('torch' in sys.modules, time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split()
    assert out[0] == "False" and float(out[1]) < 1.0
    for command in ([], ["train"], ["sample"], ["noise"], ["schedules"], ["data", "preview"], ["data", "export"]):
        start = time.perf_counter()
        done = run_condiff_subprocess(*command, "--help")
        assert done.returncode == 0 and "usage: condiff" in done.stdout
        assert time.perf_counter() - start < 5  # includes starting Python; the import itself is checked above


def test_train_errors(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  bach_size: 8\n")
    one_line_error(capsys, ["train", str(recipe)], "did you mean 'batch_size'")
    one_line_error(capsys, ["train", str(tmp_path / "missing.yaml")], "missing.yaml: recipe file not found")
    recipe.write_text("train:\n  batch_size: eight\n")
    one_line_error(capsys, ["train", str(recipe)], "train.batch_size = 'eight'")
    recipe.write_text(f"data:\n  source: {tmp_path / 'nowhere'}\ntrain:\n  output_dir: {tmp_path / 'out'}\n")
    one_line_error(capsys, ["train", str(recipe)], "no such folder or file")
    one_line_error(capsys, ["train", str(recipe), "--set", "data.source=not a dataset"], "not a Hub id")
    assert not (tmp_path / "out").exists()


def test_unreadable_image_in_folder_names_the_file(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  source: {folder}\ntrain:\n  output_dir: {tmp_path / 'out'}\n")
    one_line_error(capsys, ["train", str(recipe)], "broken.png")
    assert not (tmp_path / "out").exists()


def test_sample_and_noise_errors(tmp_path, capsys):
    one_line_error(capsys, ["sample", "--model", str(tmp_path / "nope")], "nope")
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["sample", "--model", str(tmp_path / "empty")], "not a model folder")
    one_line_error(capsys, ["sample", "--model", str(tmp_path), "--num", "0"], "--num 0")
    one_line_error(capsys, ["sample", "--model", str(tmp_path), "--out", "grid.jpg"], "must end in .png")
    one_line_error(capsys, ["noise", str(tmp_path / "missing.png")], "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    one_line_error(capsys, ["noise", str(text), "--out", str(tmp_path / "o.png")], "notes.png")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    one_line_error(capsys, ["noise", str(image), "--t", "5000", "--out", str(tmp_path / "o.png")], "5000")
    one_line_error(capsys, ["noise", str(image), "--out", str(image)], "refusing to overwrite the input")
    assert not (tmp_path / "o.png").exists()


def test_pickled_weights_are_refused(tmp_path, capsys):
    import torch

    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text("{}")
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, folder / "unet" / "diffusion_pytorch_model.bin")
    one_line_error(capsys, ["sample", "--model", str(folder)], "safetensors only")
    assert not marker.exists()


def test_data_preview_takes_data_settings(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 60, 0, 0)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    one_line_error(capsys, ["data", "preview", str(folder), "--out", str(tmp_path / "p.png")], "bad_images")
    assert main(["data", "preview", str(folder), "--num", "4", "--resolution", "8", "--out", str(tmp_path / "p.png"),
                 "--set", "data.bad_images=skip"]) == 0
    assert "a grid of 3 images" in capsys.readouterr().out
    one_line_error(capsys, ["data", "preview", "nouns", "--set", "train.lr=1"], "data.* settings only")
    one_line_error(capsys, ["data", "preview", "nouns", "--set", "data.bad_imges=skip"], "bad_images")


def test_data_preview_and_export(tmp_path, capsys):
    assert main(["data", "preview", "nouns", "--num", "4", "--out", str(tmp_path / "p.png")]) == 0
    width, height = Image.open(tmp_path / "p.png").size
    assert width == height and 2 * 4 * 32 <= width < 2 * 4 * 32 + 10  # 2x2 grid, 4x nearest upscaling
    assert main(["data", "export", "nouns", "--num", "5", "--out", str(tmp_path / "folder")]) == 0
    files = sorted(p.name for p in (tmp_path / "folder").iterdir())
    assert files == ["0.png", "1.png", "2.png", "3.png", "4.png", "metadata.jsonl"]
    first = json.loads((tmp_path / "folder" / "metadata.jsonl").read_text().splitlines()[0])
    from condiff.data.nouns import load_art

    assert first["glasses"] in load_art().part_names["glasses"] and first["background"] in ("cool", "warm")
    one_line_error(capsys, ["data", "export", "nouns", "--num", "5", "--out", str(tmp_path / "folder")],
                   "already exists")


@pytest.mark.slow
def test_export_as_datasets_and_train_from_it(tmp_path):
    import datasets

    assert main(["data", "export", "nouns", "--num", "8", "--format", "datasets",
                 "--out", str(tmp_path / "ds")]) == 0
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert loaded.column_names == ["image", "text", "background", "body", "accessory", "head", "glasses"]
    assert len(loaded) == 8
    # The parts carry their names: the head named in the caption is the head the label names.
    from condiff.data.nouns import NounsDataset

    for item, source in zip(loaded, NounsDataset(size=8, seed=0), strict=True):
        head = loaded.features["head"].int2str(item["head"])
        assert item["head"] == source["labels"][3] and f"{head.replace('-', ' ')} head" in item["text"]
    assert "glasses" in loaded[0]["text"]
    # The exported folder is itself a valid training source (image folder with metadata.jsonl too).
    assert main(["data", "export", "nouns", "--num", "8", "--out", str(tmp_path / "imgs")]) == 0
    for source in (tmp_path / "ds", tmp_path / "imgs"):
        from condiff.config import recipe_from_dict
        from condiff.data.sources import build_dataset

        dataset = build_dataset(recipe_from_dict({"data": {"source": str(source)}}).data)
        assert len(dataset) == 8 and dataset[0]["image"].shape == (32, 32, 3)


@pytest.mark.slow
def test_train_sample_noise_schedules_end_to_end(tmp_path):
    import yaml

    from tests.conftest import tiny_values

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_values(tmp_path / "run", max_steps=2)))
    done = run_condiff_subprocess("train", str(recipe))
    assert done.returncode == 0, done.stderr
    assert "model in" in done.stdout
    grid, gif = tmp_path / "grid.png", tmp_path / "denoise.gif"
    done = run_condiff_subprocess("sample", "--model", str(tmp_path / "run"), "--num", "4", "--steps", "3",
                                  "--scheduler", "ddim", "--out", str(grid), "--gif", str(gif))
    assert done.returncode == 0, done.stderr
    assert Image.open(grid).size[0] > 4 * 32
    frames = Image.open(gif)
    assert frames.n_frames >= 3
    done = run_condiff_subprocess("noise", str(grid), "--t", "0", "50", "99", "--out",
                                  str(tmp_path / "strip.png"))
    assert done.returncode == 0, done.stderr
    done = run_condiff_subprocess("schedules", "--out", str(tmp_path / "schedules.png"))
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "schedules.png").format == "PNG"


@pytest.mark.parametrize("argv,named", [(["sample", "--num", "1e9"], "--num"), (["bogus"], "bogus"),
                                        (["colorize"], "input"), (["train", "r.yaml", "--bogus"], "--bogus")])
def test_command_line_mistakes_are_one_line(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("condiff: error:") and named in err and "--help" in err and len(err.splitlines()) == 1


def test_sample_out_dir_writes_one_png_per_image_as_in_the_grid(tmp_path, capsys):
    grid, folder = tmp_path / "grid.png", tmp_path / "images"
    assert main(["sample", "--num", "3", "--steps", "2", "--seed", "4", "--scale", "1", "--out", str(grid),
                 "--out-dir", str(folder)]) == 0
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["00000.png", "00001.png", "00002.png"]
    from PIL import Image

    first = np.asarray(Image.open(folder / "00000.png"))
    assert first.shape == (32, 32, 3) and np.array_equal(first, np.asarray(Image.open(grid))[1:33, 1:33])
    again = tmp_path / "again"
    assert main(["sample", "--num", "3", "--steps", "2", "--seed", "4", "--out-dir", str(again)]) == 0
    assert not (tmp_path / "samples.png").exists()  # --out-dir alone writes no grid
    assert all(np.array_equal(np.asarray(Image.open(again / name)), np.asarray(Image.open(folder / name)))
               for name in names)
    capsys.readouterr()
    assert main(["sample", "--num", "1", "--out-dir", str(folder)]) == 2  # files already there are kept
    assert "not an empty folder" in capsys.readouterr().err


def test_output_piped_into_head_ends_quietly(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(Path(__file__).parents[1] / "src" / "condiff" / "models" / "colorize", folder)
    card = folder / "README.md"
    card.write_text(card.read_text() + ("a long card line\n" * 20000))  # more than a pipe holds
    script = f'"{sys.executable}" -m condiff info "{folder}" | head -1; exit "${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("# ") and done.stdout.count("\n") == 1
    assert done.stderr == "" and done.returncode == 141
