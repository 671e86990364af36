"""Any conditional model, any condition: per-condition inputs, `condiff generate`, eval of models with
several conditions, and the pipeline's diffusers conventions (generator, default sampler, progress bar,
`DiffusionPipeline.from_pretrained`)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from condiff.cli.main import main
from condiff.config import recipe_from_dict
from condiff.errors import CondiffError
from tests.conftest import save_untrained_models, tiny_values

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def two_conditions(tmp_path_factory):
    """A tiny model trained (2 steps) on sketch + grayscale."""
    from condiff.training.from_recipe import train_recipe

    out = tmp_path_factory.mktemp("two") / "model"
    values = tiny_values(out, max_steps=2)
    values["conditions"] = [{"name": "sketch", "dropout": 0.1}, {"name": "grayscale", "dropout": 0.1}]
    train_recipe(recipe_from_dict(values))
    return out


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Untrained tiny models: grayscale + canny, and canny alone (a model no friendly command fits)."""
    root = tmp_path_factory.mktemp("untrained")
    models = {"gray-canny": ["grayscale", "canny"], "canny": ["canny"], "sketch-gray": ["sketch", "grayscale"]}
    save_untrained_models(root, {name: [{"name": condition} for condition in conditions]
                                 for name, conditions in models.items()})
    return root


def drawing(shape: str, size: int = 64) -> Image.Image:
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    box = (10, 10, size - 10, size - 10)
    (draw.rectangle if shape == "box" else draw.ellipse)(box, outline=0, width=3)
    return image


def gray(level: int) -> Image.Image:
    return Image.fromarray(np.tile(np.linspace(level, 255 - level, 32, dtype=np.uint8), (32, 1)), "L")


# --- per-condition inputs -----------------------------------------------------------------------


def test_each_condition_reads_its_own_input_and_steers_its_own_channels(two_conditions):
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(two_conditions)
    sketch_slice, gray_slice = pipeline.conditions.channel_slices
    box, round_ = drawing("box"), drawing("round")
    channels = pipeline.encode({"sketch": box, "grayscale": gray(30)})
    sketch_alone = pipeline.conditions.encoders[0].encode_input(box, 32)
    gray_alone = pipeline.conditions.encoders[1].encode_input(gray(30), 32)
    assert torch.equal(channels[:, sketch_slice], sketch_alone)
    assert torch.equal(channels[:, gray_slice], gray_alone)
    other_sketch = pipeline.encode({"sketch": round_, "grayscale": gray(30)})
    assert torch.equal(other_sketch[:, gray_slice], channels[:, gray_slice])  # only the sketch's channels move
    assert not torch.equal(other_sketch[:, sketch_slice], channels[:, sketch_slice])
    # The trained model answers each input: another sketch or another gray changes the output. (Its
    # own colours: with the palette, a gray input fixes each pixel's colour whatever the sketch says.)
    call = {"num_inference_steps": 3, "seed": 0, "output_type": "latent", "palette": "off"}
    first = pipeline({"sketch": box, "grayscale": gray(30)}, **call).images
    assert not torch.equal(first, pipeline({"sketch": round_, "grayscale": gray(30)}, **call).images)
    assert not torch.equal(first, pipeline({"sketch": box, "grayscale": gray(90)}, **call).images)
    # One image for all conditions is the mapping with that image everywhere.
    assert torch.equal(pipeline(box, **call).images, pipeline({"sketch": box, "grayscale": box}, **call).images)


def test_per_condition_inputs_are_checked(two_conditions):
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(two_conditions)
    with pytest.raises(CondiffError, match="no input for grayscale"):
        pipeline({"sketch": drawing("box")}, num_inference_steps=1)
    with pytest.raises(CondiffError, match="no condition 'colour'"):
        pipeline({"sketch": drawing("box"), "grayscale": gray(0), "colour": gray(0)}, num_inference_steps=1)
    with pytest.raises(CondiffError, match="same number of images"):
        pipeline({"sketch": [drawing("box")] * 2, "grayscale": [gray(0)]}, num_inference_steps=1)


# --- condiff generate ---------------------------------------------------------------------------


def test_generate_takes_one_input_per_condition(two_conditions, tmp_path):
    box, level = tmp_path / "box.png", tmp_path / "gray.png"
    drawing("box").save(box)
    gray(30).save(level)
    out = tmp_path / "out.png"
    argv = ["generate", "--model", str(two_conditions), "--input", f"sketch={box}", "--input", f"grayscale={level}",
            "--steps", "3", "--out", str(out), "--num", "2", "--guidance", "2", "1", "--gif"]
    assert main(argv) == 0
    assert [Image.open(tmp_path / f"out-{i}.png").size for i in range(2)] == [(32, 32), (32, 32)]
    assert Image.open(tmp_path / "out.gif").n_frames >= 2
    from condiff.model_folder import load_pipeline
    from condiff.sampling import DEFAULT_SAMPLER
    from condiff.tasks import GENERATE

    pipeline = GENERATE.load(str(two_conditions), "cpu", DEFAULT_SAMPLER, 3)  # as the command samples
    expected = GENERATE.run(pipeline, {"sketch": Image.open(box), "grayscale": Image.open(level)}, num=2, steps=3,
                            guidance=[2.0, 1.0], seed=0).images
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out-0.png")), np.asarray(expected[0]))
    assert load_pipeline(two_conditions).conditions.names == ["sketch", "grayscale"]


def test_generate_runs_a_model_that_no_friendly_command_fits(untrained, tmp_path):
    source = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(source)
    assert main(["colorize", str(source), "--model", str(untrained / "canny"), "--out", str(tmp_path / "c.png")]) == 2
    assert main(["generate", "--model", str(untrained / "canny"), "--input", str(source), "--steps", "2"]) == 0
    assert (tmp_path / "photo-generated.png").is_file()


@pytest.mark.parametrize("inputs,message", [
    (["sketch=a.png", "b.png"], "not both"),
    (["sketch=a.png", "sketch=b.png"], "given twice"),
    (["colour=a.png"], "no condition 'colour'"),
    (["sketch=a.png"], "no input for grayscale"),
])
def test_generate_input_mistakes_are_one_line_errors(two_conditions, tmp_path, capsys, inputs, message):
    for name in ("a.png", "b.png"):
        drawing("box").save(tmp_path / name)
    argv = ["generate", "--model", str(two_conditions), "--steps", "1", "--out", str(tmp_path / "out.png")]
    for item in inputs:
        name, _, path = item.rpartition("=")
        argv += ["--input", f"{name}={tmp_path / path}" if name else str(tmp_path / path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_extra_outputs_never_overwrite_an_input(tmp_path, capsys):
    source = tmp_path / "a-fullres.png"
    gray(30).save(source)
    before = source.read_bytes()
    assert main(["colorize", str(source), "--out", str(tmp_path / "a.png"), "--full-res", "--steps", "1"]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    gif_input = tmp_path / "g.gif"
    gray(30).save(gif_input)
    assert main(["sketch2img", str(gif_input), "--out", str(tmp_path / "g.png"), "--gif", "--steps", "1"]) == 2
    assert source.read_bytes() == before and not (tmp_path / "a.png").exists()


# --- eval of models with several conditions -----------------------------------------------------


@pytest.mark.parametrize("task,model", [("colorize", "gray-canny"), ("sketch2img", "sketch-gray")])
def test_eval_takes_a_model_with_the_task_condition_among_others(untrained, tmp_path, capsys, task, model):
    assert main(["eval", task, "--model", str(untrained / model), "--num", "10", "--steps", "2"]) == 0
    assert "model" in capsys.readouterr().out


# --- diffusers conventions ----------------------------------------------------------------------


# The model's own colours: with the palette, the gray input alone would fix them, whatever the sampler.
OWN_COLOURS = {"output_type": "latent", "palette": "off"}


def test_seed_generator_and_default_sampler(two_conditions):
    from condiff.model_folder import load_pipeline
    from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, make_sampler

    pipeline = load_pipeline(two_conditions)
    box = drawing("box")
    by_seed = pipeline(box, num_images_per_input=2, seed=7, **OWN_COLOURS).images
    generators = [torch.Generator().manual_seed(7 + i) for i in range(2)]
    assert torch.equal(by_seed, pipeline(box, num_images_per_input=2, generator=generators,
                                         **OWN_COLOURS).images)
    one = pipeline(box, generator=torch.Generator().manual_seed(3), **OWN_COLOURS).images
    assert torch.equal(one, pipeline(box, generator=torch.Generator().manual_seed(3), **OWN_COLOURS).images)
    # Without num_inference_steps the saved training scheduler samples as the commands do.
    training_scheduler = pipeline.scheduler
    pipeline.scheduler = make_sampler(training_scheduler, DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS)
    as_cli = pipeline(box, num_inference_steps=DEFAULT_SAMPLER_STEPS, seed=7, **OWN_COLOURS).images
    pipeline.scheduler = training_scheduler
    assert torch.equal(pipeline(box, seed=7, **OWN_COLOURS).images[:1], as_cli)
    # A scheduler the user chose is kept.
    pipeline.scheduler = make_sampler(training_scheduler, "ddim")
    ddim = pipeline(box, seed=7, **OWN_COLOURS).images
    assert not torch.equal(ddim, as_cli)


def test_the_progress_bar_can_be_turned_off(two_conditions, capfd):
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(two_conditions)
    capfd.readouterr()
    pipeline(drawing("box"), num_inference_steps=2)
    assert "2/2" in capfd.readouterr().err
    pipeline.set_progress_bar_config(disable=True)
    pipeline(drawing("box"), num_inference_steps=2)
    assert capfd.readouterr().err == ""


def test_diffusers_loads_a_conditional_folder_after_import_condiff(two_conditions):
    script = f"""
import sys
import condiff
assert "torch" not in sys.modules, "importing condiff must stay cheap"
from diffusers import DiffusionPipeline
pipeline = DiffusionPipeline.from_pretrained({str(two_conditions)!r})
assert type(pipeline).__name__ == "ConditionalDDPMPipeline", type(pipeline)
assert pipeline.conditions.names == ["sketch", "grayscale"]
from PIL import Image
print(len(pipeline(Image.new("L", (32, 32)), num_inference_steps=2).images))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("1")


# --- plugins: how encode shows channels -----------------------------------------------------------


def test_encode_shows_each_encoder_its_own_way(tmp_path):
    from condiff import ConditionEncoder, register_condition

    @register_condition("test-four-channels")
    class FourChannels(ConditionEncoder):
        channels = 4

        def encode_input(self, image, resolution):
            return torch.zeros(1, 4, resolution, resolution)

    picture = Image.new("RGBA", (40, 40), (200, 10, 10, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 20, 20))  # a transparent hole for inpaint
    picture.save(tmp_path / "in.png")
    widths = {}
    for name in ("canny", "lowres", "inpaint", "test-four-channels"):
        out = tmp_path / f"{name}.png"
        assert main(["encode", "--condition", name, str(tmp_path / "in.png"), "--resolution", "16", "--scale", "1",
                     "--out", str(out)]) == 0
        widths[name] = Image.open(out).width
    # 1 and 3 channels: one panel; inpaint: the mask beside the masked image; 4 plain channels: 4 grays.
    assert widths == {"canny": 16, "lowres": 16, "inpaint": 2 * 16 + 1, "test-four-channels": 4 * 16 + 3}


@pytest.mark.parametrize("guidance", [float("nan"), float("inf"), -1.0, 1e6, [1.0, float("nan")]])
def test_guidance_out_of_range_is_refused_in_the_pipeline(two_conditions, guidance):
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(two_conditions)
    with pytest.raises(CondiffError, match="--guidance .*from 0 to 50"):
        pipeline(drawing("box"), num_inference_steps=1, guidance=guidance)
