"""A model folder gives the same fixed-seed samples as the code gave before it was consolidated
(bit for bit on the machine that wrote them; another CPU's float rounding may move a rare value by one
8-bit level, `assert_same_samples`): tests/data/reference-samples/ was written by the code of commit
bee3425 from the shipped models (DPM-Solver++ 8 steps, seed 5, guidance 2), and every entry point must
still reproduce it.
That code had no palettes: `palette="off"` (--palette off) samples as it did. The sketch2img sample was
written again each time that model was re-shipped with new weights (the second training stage,
recipes/sketch2img-finetune.yaml; then the third, recipes/sketch2img-fill.yaml, whose sketch fixes the
silhouette that sampling keeps; then the same three stages from the palette-head unconditional model,
issue 14), by the code of that commit, from the same input and settings. The unconditional sample was
written again when that model was re-shipped as a palette head (issue 14), by the code of that commit: the
same settings, the head's own colours (`palette="off"` does not snap). The colorize sample was written again
when that model was re-shipped as the chroma model (issue 41), by the code of that commit, from the same input
and settings."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condiff.cli.main import main
from condiff.images import open_image, to_uint8
from condiff.tasks import TASKS
from tests.conftest import save_untrained_models

ROOT = Path(__file__).parents[1]
REFERENCE = Path(__file__).parent / "data" / "reference-samples"
INPUTS = {"colorize": ROOT / "docs/images/input-gray-noun.png", "sketch2img": ROOT / "docs/images/input-drawing.png"}


def reference(name: str) -> np.ndarray:
    suffix = "dpm8-seed5.png" if name == "unconditional" else "dpm8-seed5-guidance2.png"
    return np.asarray(Image.open(REFERENCE / f"{name}-{suffix}").convert("RGB"))


def assert_same_samples(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float rounding: at most one level apart, in at most 1 of 1000 values (on a 2-core AMD
    EPYC, 1 of 6144 values of the stored samples came out one level off). Any change to sampling moves
    far more values, and by more."""
    assert actual.shape == expected.shape
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() <= 0.001, (difference.max(), (difference > 0).mean())


def side_by_side(images) -> np.ndarray:
    return np.concatenate([to_uint8(image)[0] for image in images], axis=1)


@pytest.mark.parametrize("name", ["unconditional", "colorize", "sketch2img"])
def test_tasks_reproduce_the_stored_samples_of_the_shipped_models(name):
    task = TASKS[name]
    pipeline = task.load(None, "cpu", "dpm", 8)
    if name == "unconditional":
        result = task.run(pipeline, num=3, steps=8, seed=5, palette="off")
    else:
        result = task.run(pipeline, open_image(INPUTS[name]), num=2, steps=8, guidance=2.0, seed=5, palette="off")
    assert_same_samples(side_by_side(result.images), reference(name))


def test_a_folder_saved_before_settings_were_recorded_still_loads_and_samples_the_same(tmp_path):
    # Folders used to record only {name, dropout} per condition; such a folder must still load, at the
    # settings' defaults, and sample as the folder that records them.
    folder = save_untrained_models(tmp_path, {"colorize": [{"name": "grayscale", "dropout": 0.1}]})["colorize"]
    task = TASKS["colorize"]

    def samples() -> np.ndarray:
        pipeline = task.load(str(folder), "cpu", "dpm", 4)
        result = task.run(pipeline, open_image(INPUTS["colorize"]), num=2, steps=4, guidance=2.0, seed=5,
                          palette="off")
        return side_by_side(result.images)

    recorded = samples()
    config = folder / "conditions" / "config.json"
    values = json.loads(config.read_text())
    assert set(values["conditions"][0]) > {"name", "dropout"}  # today's folders record every setting
    values["conditions"] = [{"name": "grayscale", "dropout": 0.1}]
    config.write_text(json.dumps(values))
    assert np.array_equal(samples(), recorded)


def test_the_commands_write_the_stored_samples(tmp_path):
    out = tmp_path / "samples.png"
    # The stored samples were drawn with dpm, named here so that they do not follow the default sampler.
    assert main(["sample", "--num", "3", "--steps", "8", "--scheduler", "dpm", "--seed", "5", "--scale", "1",
                 "--out", str(out), "--palette", "off"]) == 0
    grid = np.asarray(Image.open(out).convert("RGB"))
    cells = [grid[1:33, 1 + 33 * i: 33 + 33 * i] for i in range(2)] + [grid[34:66, 1:33]]  # a 2 x 2 grid
    assert_same_samples(np.concatenate(cells, axis=1), reference("unconditional"))
    out = tmp_path / "colorized.png"
    assert main(["colorize", str(INPUTS["colorize"]), "--num", "2", "--steps", "8", "--scheduler", "dpm", "--seed",
                 "5", "--guidance", "2", "--out", str(out), "--palette", "off"]) == 0
    written = [np.asarray(Image.open(tmp_path / f"colorized-{i}.png")) for i in range(2)]
    assert_same_samples(np.concatenate(written, axis=1), reference("colorize"))
