"""`condiff eval TASK --data FOLDER`: a model measured on a user's own images it never trained on."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from condiff.cli.main import main
from condiff.evaluation.own_images import GrayLevelColours, RandomFeatureSpace, chroma_error, own_images
from condiff.images import list_image_files, to_model_tensor
from tests.conftest import one_line_error, save_untrained_models, tiny_values

COLOURS = [(220, 40, 40), (40, 90, 220), (250, 200, 30), (40, 170, 80), (150, 60, 170)]


def emoji_folder(folder, count=40, size=40):
    """`count` RGBA images like icons: a coloured shape on a transparent background."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = np.zeros((size, size, 4), np.uint8)
        top, left = rng.integers(2, size // 3, 2)
        bottom, right = rng.integers(size // 2, size - 2, 2)
        pixels[top:bottom, left:right] = (*COLOURS[i % len(COLOURS)], 255)
        pixels[top + 3:top + 6, left + 3:right - 3] = (20, 20, 20, 255)
        Image.fromarray(pixels, "RGBA").save(folder / f"{i:03d}.png")
    return folder


def trained_on(model, folder, held_out_every):
    """Give an untrained model folder the recipe.yaml that training on `folder` would have written."""
    data = {"source": str(folder), "size": None, "resolution": 32, "resize": "box", "held_out_every": held_out_every}
    (model / "recipe.yaml").write_text(yaml.safe_dump({"data": data}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    folder = emoji_folder(root / "icons")
    models = save_untrained_models(root / "models", {"unconditional": [], "colorize": [{"name": "grayscale"}]})
    for model in models.values():
        trained_on(model, folder, 4)
    return folder, models


def report(tmp_path, *argv):
    out = tmp_path / "eval.json"
    assert main(["eval", *argv, "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    return {row["name"]: row for row in result["rows"]}, result


def test_the_images_measured_are_the_held_out_split_read_as_training_reads_them(setup):
    folder, models = setup
    own = own_images(str(folder), models["colorize"], 32, 500)
    files = list_image_files(folder)
    assert len(own.truth) == 10 and len(own.training) == 30  # every 4th of 40 held out
    first = Image.open(files[0]).convert("RGBA")
    white = Image.new("RGBA", first.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, first).convert("RGB").resize((32, 32), Image.Resampling.BOX))
    assert torch.equal(own.truth[0], to_model_tensor(expected[None])[0])
    assert not any(torch.equal(own.truth[0], image) for image in own.training)


def test_colorize_on_own_images_beside_the_truth_the_gray_input_and_a_table(setup, tmp_path):
    folder, models = setup
    rows, result = report(tmp_path, "colorize", "--model", str(models["colorize"]), "--data", str(folder),
                          "--num", "10", "--steps", "1")
    assert list(rows) == ["model", "true colour", "gray input", "gray-level table"]
    assert result["settings"]["data"] == str(folder) and result["settings"]["images"] == 10
    truth, gray, table = rows["true colour"], rows["gray input"], rows["gray-level table"]
    assert truth["chroma err"] == 0 and truth["colourful"] == pytest.approx(1.0) and truth["PSNR"] == 100
    assert gray["colourful"] == 0 and gray["luma err"] == 0 and gray["chroma err"] > 10
    assert table["chroma err"] < gray["chroma err"]  # each shape's gray names its colour: the table knows it
    assert any("held-out images (every 4th" in note for note in result["notes"])


def test_the_gray_level_table_gives_back_colours_that_their_gray_names():
    rng = np.random.default_rng(1)
    images = to_model_tensor(np.array(COLOURS, np.uint8)[rng.integers(0, len(COLOURS), (6, 8, 8))])
    gray = images.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)  # any gray: the table reads its level
    from condiff.evaluation.evaluators import gray_file_images

    coloured = GrayLevelColours(images).colorize(gray_file_images(images))
    assert chroma_error(coloured, images) < 2.0 < chroma_error(gray, images)


def test_unconditional_on_own_images_in_a_space_that_knows_no_data_set(setup, tmp_path):
    folder, models = setup
    rows, result = report(tmp_path, "unconditional", "--model", str(models["unconditional"]), "--data",
                          str(folder), "--num", "10", "--steps", "1")
    assert list(rows) == ["model", "training images", "noise", "mean image"]
    assert rows["training images"]["FD"] < rows["noise"]["FD"]
    own = own_images(str(folder), models["unconditional"], 32, 500)
    space = RandomFeatureSpace(own.truth)
    assert space.scores(own.truth)["FD"] < 1e-6 < space.scores(own.training[:10])["FD"]


def test_bad_input_to_data_is_one_line_and_writes_nothing(setup, tmp_path, capsys):
    folder, models = setup
    out = tmp_path / "eval.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (16, 20), (1, 2, 3)).save(small / "tiny.png")
    cases = [
        (["colorize", "--model", str(models["colorize"]), "--data", str(empty)], "no image files"),
        (["colorize", "--model", str(models["colorize"]), "--data", str(tmp_path / "missing")], "no such folder"),
        (["colorize", "--model", str(models["colorize"]), "--data", str(small)], "smaller than the model's 32 px"),
        (["colorize", "--model", str(models["unconditional"]), "--data", str(folder)], "unconditional model"),
        (["sketch2img", "--model", str(models["colorize"]), "--data", str(folder)], "sketch2img needs sketch"),
        (["--data", str(folder)], "--data needs a task"),
        (["colorize", "--model", str(models["colorize"]), "--data", str(folder), "--inception"], "--inception"),
    ]
    for argv, fragment in cases:
        error = one_line_error(capsys, ["eval", *argv, "--steps", "1", "--json", str(out)], fragment)
        assert not out.exists(), error
    assert "tiny.png" in one_line_error(capsys, ["eval", *cases[2][0], "--steps", "1"], "16x20 px")
    # A model trained on every image of the folder has nothing unseen there.
    model = save_untrained_models(tmp_path / "m", {"c": [{"name": "grayscale"}]})["c"]
    trained_on(model, folder, 0)
    one_line_error(capsys, ["eval", "colorize", "--model", str(model), "--data", str(folder), "--steps", "1"],
                   "trained on every image")


def test_training_ends_with_an_evaluation_on_held_out_images_as_run_and_network_alone(setup, tmp_path, capsys):
    folder, _ = setup
    values = tiny_values(tmp_path / "run", max_steps=2, eval_images=10)
    values["data"] = {"source": str(folder), "size": None, "resolution": 32, "resize": "box", "held_out_every": 4}
    values["conditions"] = [{"name": "grayscale", "dropout": 0.1}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(values))
    assert main(["train", str(recipe)]) == 0
    reports = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert [r["settings"]["measured"] for r in reports] == [
        "as the commands run it", "on the network alone (every sampling-time step off)"]
    assert all(r["task"] == "colorize" and r["settings"]["data"] == str(folder) for r in reports)
    assert "condiff: wrote the evaluation to" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "run")]) == 0
    card = capsys.readouterr().out
    evaluation = card.index("## Evaluation (`condiff eval`, at the end of training)")
    assert evaluation < card.index("## Samples")
    assert card.count("gray-level table") == 2 and "held-out images (every 4th" in card


def test_too_few_evaluation_images_is_a_one_line_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_values(tmp_path / "run", eval_images=5)))
    one_line_error(capsys, ["train", str(recipe)], "train.eval_images = 5")
    assert not (tmp_path / "run").exists()
