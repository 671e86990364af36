"""Issue 43, inputs that used to cost the machine or the output: an image too large to process (43.5) and a
plugin encoder that returns broken condition channels (43.7). Each is a one-line error, exit 2, nothing written.

43.5: every input image is bounded from its header (16 MP, the app's limit, unless CONDIFF_MAX_PIXELS says
otherwise), and colorize --full-res needs memory proportional to the image: 8-bit arrays plus one float32 band,
not float64 Lab arrays of the whole image. The bombs run in a child process limited to 2 GiB.
43.7: condition channels are checked where they leave an encoder (condiff.conditions.stack): floating point,
the right shape, finite, at most CHANNEL_LIMIT in magnitude.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from condiff.errors import CondiffError
from tests.conftest import one_line_error, save_untrained_models

ROOT = Path(__file__).parents[1]


def run_limited(*args: str, memory: int = 2 * 2**30, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` in a child process that may use at most `memory` bytes: a bomb cannot hurt the machine."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    import condiff

    inherited = {key: value for key, value in os.environ.items() if key != "CONDIFF_MAX_PIXELS"}
    source = Path(condiff.__file__).parents[1]  # the condiff under test, also when PYTHONPATH names another
    env = {**inherited, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=limit)


# ---------------------------------------------------------------------------------------------------
# 43.5 Images too large: bounded from the header, and --full-res proportional to the image
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    return save_untrained_models(tmp_path_factory.mktemp("gray"), {"gray": [{"name": "grayscale"}]})["gray"]


# The bomb (7999x7999, 248 KB; stored here as a 1-bit PNG, whose header says the same) and a 20 MP
# image, just over the limit: both were accepted, and --full-res of either used many GB.
@pytest.mark.parametrize("width,height,mode", [(7999, 7999, "1"), (5000, 4000, "L")])
def test_an_image_over_the_pixel_limit_is_refused_from_its_header(gray_model, tmp_path, width, height, mode):
    bomb = tmp_path / "bomb.png"
    Image.new(mode, (width, height)).save(bomb)
    start = time.perf_counter()
    done = run_limited("-m", "condiff", "colorize", str(bomb), "--model", str(gray_model), "--full-res",
                       "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "out.png"))
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err, err[-2000:]
    assert err.startswith(f"condiff: error: {bomb}: image is {width}x{height}"), err
    assert "over the limit of 16,000,000" in err and f"CONDIFF_MAX_PIXELS={width * height}" in err, err
    assert time.perf_counter() - start < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png"]  # nothing written


def test_the_pixel_limit_is_one_default_shared_with_the_app_and_overridable(tmp_path, monkeypatch, capsys):
    from condiff.app.models import MAX_UPLOAD_PIXELS
    from condiff.images import DEFAULT_MAX_PIXELS, open_image, pixel_limit

    monkeypatch.delenv("CONDIFF_MAX_PIXELS", raising=False)
    assert pixel_limit() == DEFAULT_MAX_PIXELS == MAX_UPLOAD_PIXELS == 16_000_000
    Image.new("L", (40, 40)).save(tmp_path / "a.png")
    monkeypatch.setenv("CONDIFF_MAX_PIXELS", "1599")
    with pytest.raises(CondiffError, match="a.png: image is 40x40 = 1,600 pixels, over the limit of 1,599"):
        open_image(tmp_path / "a.png")
    monkeypatch.setenv("CONDIFF_MAX_PIXELS", "1600")
    assert open_image(tmp_path / "a.png").size == (40, 40)
    for wrong in ("lots", "-5", "0", "1e9"):
        monkeypatch.setenv("CONDIFF_MAX_PIXELS", wrong)
        one_line_error(capsys, ["colorize", str(tmp_path / "a.png"), "--model", "unused", "--out",
                                str(tmp_path / "b.png")], f"CONDIFF_MAX_PIXELS={wrong!r}: give a whole number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def _reference_recombine(source: Image.Image, colour: Image.Image) -> np.ndarray:
    """The formula of condiff 0.x before issue 43: the whole image in float64 through skimage's Lab."""
    from skimage.color import lab2rgb, rgb2lab

    from condiff.images import to_rgb

    source_rgb = np.asarray(to_rgb(source), dtype=np.float64) / 255.0
    height, width = source_rgb.shape[:2]
    colour_big = np.asarray(to_rgb(colour).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    lab = rgb2lab(colour_big)
    lab[..., 0] = rgb2lab(source_rgb)[..., 0]
    return (np.clip(lab2rgb(lab), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")  # the reference formula's clipping notice
def test_full_res_output_is_the_float64_formulas_within_one_level_in_any_band_size(monkeypatch):
    from condiff.tasks import colorize

    rng = np.random.default_rng(0)
    photo = Image.open(ROOT / "docs/images/input-photo.jpg")
    noise = Image.fromarray(rng.integers(0, 256, (301, 417, 3), dtype=np.uint8))
    for source in (photo, noise, noise.convert("L"), noise.convert("RGBA")):
        colour = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        whole = np.asarray(colorize.recombine_luminance(source, colour))
        difference = np.abs(whole.astype(int) - _reference_recombine(source, colour))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
        monkeypatch.setattr(colorize, "BAND_PIXELS", source.width * 7 + 3)  # bands of 7 rows, the last shorter
        assert np.array_equal(np.asarray(colorize.recombine_luminance(source, colour)), whole)
        monkeypatch.undo()


MEASURE_FULL_RES = """
import json, sys, tracemalloc
import numpy as np
from PIL import Image
from condiff.tasks.colorize import recombine_luminance
side = int(sys.argv[1])
y, x = np.mgrid[0:side, 0:side]
source = Image.fromarray(((x + y) % 256).astype(np.uint8))  # an 8-bit gray input, 1 byte a pixel
colour = Image.new("RGB", (32, 32), (200, 120, 40))
tracemalloc.start()
output = recombine_luminance(source, colour)
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "size": list(output.size)}))
"""


def test_full_res_memory_is_proportional_to_the_image_not_a_multiple_of_it():
    """Before: about 190 bytes a pixel in float64 temporaries (16 MP: 3.1 GB); now 8-bit arrays of the image
    (the RGB source, the enlarged colour, the output: 9 bytes a pixel) and one float32 band of ~1 MP."""
    side = 2000  # 4 MP: several bands
    done = run_limited("-c", MEASURE_FULL_RES, str(side))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["size"] == [side, side]
    band_allowance = 160 * 2**20  # one band's float32 temporaries in skimage's Lab conversions
    assert result["peak"] < 12 * side * side + band_allowance, result


# ---------------------------------------------------------------------------------------------------
# 43.7 A plugin encoder's broken channels: a one-line error naming it, never a black image
# ---------------------------------------------------------------------------------------------------


FAULTS = {  # how the toy encoder breaks -> what the error says
    "nan": "NaN or infinite values",
    "inf": "NaN or infinite values",
    "-inf": "NaN or infinite values",
    "huge": "values as large as 1e+30",
    "channels": "2 channel(s) where the encoder declares 1",
    "size": "16x16 pixels for images of 32x32",
    "batch": "a batch of 2 for 1 image(s)",
    "integer": "a tensor of torch.int64, not of floating point",
    "numpy": "a ndarray, not a torch tensor",
    "dims": "3 dimensions instead of 4",
}


def _broken(fault: str, batch: int, size: int) -> object:
    shape = {"channels": (batch, 2, size, size), "size": (batch, 1, size // 2, size // 2),
             "batch": (batch * 2, 1, size, size), "dims": (1, size, size)}.get(fault, (batch, 1, size, size))
    value = {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "huge": 1e30}.get(fault, 0.5)
    if fault == "integer":
        return torch.zeros(shape, dtype=torch.int64)
    if fault == "numpy":
        return np.zeros(shape, np.float32)
    channels = torch.zeros(shape)
    channels[..., 3, 5] = value  # one bad pixel is enough
    return channels


@pytest.fixture
def toy_plugin(condition_registry):
    """A registered plugin encoder of one channel that returns the channels its `fault` setting says."""
    from diffusers.configuration_utils import register_to_config

    from condiff.conditions.base import ConditionEncoder

    registry = condition_registry

    @registry.register_condition("toy-broken")
    class ToyBroken(ConditionEncoder):
        channels = 1

        @register_to_config
        def __init__(self, fault: str = "none") -> None:
            pass

        def encode_training(self, images):
            return _broken(self.config.fault, images.shape[0], images.shape[-1])

        def encode_input(self, image, resolution):
            return _broken(self.config.fault, 1, resolution)

    return ToyBroken


@pytest.mark.parametrize("fault", FAULTS)
def test_generate_refuses_a_plugins_broken_channels(toy_plugin, tmp_path, capsys, fault):
    # The broken plugin comes second, after a built-in encoder: the error names the right one.
    model = save_untrained_models(tmp_path / "models", {"m": [{"name": "grayscale"},
                                                               {"name": "toy-broken", "fault": fault}]})["m"]
    Image.new("RGB", (40, 40), (90, 140, 200)).save(tmp_path / "in.png")
    out = tmp_path / "out" / "out.png"
    err = one_line_error(capsys, ["generate", "--model", str(model), "--input", str(tmp_path / "in.png"),
                                  "--steps", "2", "--device", "cpu", "--out", str(out)], FAULTS[fault])
    assert "condition 'toy-broken' (package " in err and "encode_input returned" in err, err
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("fault,message", [
    ("nan", "NaN or infinite values"), ("huge", "values as large as 1e+30"),
    ("channels", "2 channel(s) where the encoder declares 1"), ("batch", "a batch of 8 for 4 image(s)"),
    ("integer", "a tensor of torch.int64"),
])
def test_training_refuses_a_plugins_broken_channels(toy_plugin, fault, message):
    from condiff.conditions.stack import ConditionStack

    stack = ConditionStack([{"name": "grayscale"}, {"name": "toy-broken", "fault": fault, "dropout": 0.5}])
    with pytest.raises(CondiffError, match=f"condition 'toy-broken' .*encode_training returned .*{re.escape(message)}"):
        stack.encode_training(torch.rand(4, 3, 32, 32) * 2 - 1)


def test_every_built_in_encoder_passes_the_checks(toy_plugin):
    from condiff.conditions.registry import get_condition, list_conditions
    from condiff.conditions.stack import CHANNEL_LIMIT, ConditionStack

    # The built-ins and the toy, unbroken (other test modules may have registered encoders of their own).
    names = [name for name in list_conditions()
             if name == "toy-broken" or get_condition(name).__module__.startswith("condiff.")]
    stack = ConditionStack([{"name": name} for name in names])
    torch.manual_seed(0)
    training = stack.encode_training(torch.rand(3, 3, 32, 32) * 2 - 1)
    rng = np.random.default_rng(0)
    inputs = [Image.fromarray(rng.integers(0, 256, (45, 37, 4), dtype=np.uint8)), Image.new("L", (8, 8))]
    given = stack.encode_inputs(inputs, 32)
    assert training.shape == (3, stack.channels, 32, 32) and given.shape == (2, stack.channels, 32, 32)
    assert given.dtype == torch.float32 and given.abs().max() <= 1 < CHANNEL_LIMIT
