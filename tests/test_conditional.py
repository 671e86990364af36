"""Conditions on the shared trainer: registry and plugins, warm start, guidance, pipeline, CLI."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from condiff.cli.main import main
from condiff.config import recipe_from_dict
from condiff.errors import CondiffError
from tests.conftest import tiny_values

ROOT = Path(__file__).parents[1]


def conditional_values(output_dir, conditions, **train):
    values = tiny_values(output_dir, **train)
    values["conditions"] = conditions
    return values


@pytest.fixture(scope="module")
def colorize_model(tmp_path_factory):
    from condiff.training.from_recipe import train_recipe

    out = tmp_path_factory.mktemp("colorize") / "model"
    train_recipe(recipe_from_dict(conditional_values(out, [{"name": "grayscale", "dropout": 0.2}], max_steps=2)))
    return out


def test_registry_refuses_duplicates_and_lists_known_names():
    from condiff import ConditionEncoder, get_condition, list_conditions, register_condition

    assert {"grayscale", "canny", "sketch", "lowres", "inpaint"} <= set(list_conditions())
    with pytest.raises(ValueError, match="already registered"):
        register_condition("grayscale")(type("Other", (ConditionEncoder,), {}))
    with pytest.raises(CondiffError, match="known conditions: .*grayscale"):
        get_condition("graysale")


def test_unknown_condition_setting_is_named():
    from condiff.conditions.stack import ConditionStack

    with pytest.raises(CondiffError, match=r"conditions\[0\]: unknown setting 'low_treshold'.*low_threshold"):
        ConditionStack(conditions=[{"name": "canny", "low_treshold": 3}])


def test_channel_arithmetic_and_order(tmp_path):
    from condiff.training.from_recipe import build_parts

    values = conditional_values(tmp_path, [{"name": "sketch"}, {"name": "grayscale"}, {"name": "inpaint"}])
    parts = build_parts(recipe_from_dict(values))
    unet, conditions = parts.unet, parts.conditions
    assert conditions.names == ["sketch", "grayscale", "inpaint"]
    assert conditions.channels == 1 + 1 + 4
    assert unet.config.in_channels == 3 + 6 and unet.config.out_channels == 3
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert conditions.encode_training(images).shape == (2, 6, 32, 32)


def test_warm_start_output_equals_the_unconditional_model():
    from condiff.config import ModelConfig
    from condiff.model import build_unet, widen_unet_input

    torch.manual_seed(0)
    unet = build_unet(ModelConfig(channels=[32, 32], attention=[False, True]), 32).eval()
    for p in unet.parameters():  # a "trained" model: no zero-initialised layers
        p.data.normal_(0, 0.05)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 500])
    with torch.no_grad():
        before = unet(x, t).sample
        widened = widen_unet_input(unet, 2)
        after = widened(torch.cat([x, torch.randn(2, 2, 32, 32) * 3], dim=1), t).sample
    assert widened.config.in_channels == 5
    assert (before - after).abs().max() < 1e-6


def test_guidance_matches_the_textbook_formula():
    from condiff.config import ModelConfig
    from condiff.denoiser import Denoiser
    from condiff.model import build_unet

    torch.manual_seed(0)
    unet = build_unet(ModelConfig(channels=[32, 32], attention=[False, False]), 16, in_channels=4).eval()
    denoiser = Denoiser(condition_channels=[1])
    x = torch.randn(2, 4, 16, 16)
    t = torch.tensor(7)
    with torch.no_grad():
        cond = unet(x, t).sample
        uncond = unet(torch.cat([x[:, :3], torch.zeros(2, 1, 16, 16)], 1), t).sample
        guided = denoiser.guided_output(unet, None, x, t, [3.0])
        plain = denoiser.guided_output(unet, None, x, t, [1.0])
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert torch.allclose(plain, cond, atol=1e-6)


def test_pipeline_round_trip_with_every_scheduler(colorize_model):
    from condiff.model_folder import load_pipeline
    from condiff.sampling import make_sampler

    pipeline = load_pipeline(str(colorize_model))
    assert pipeline.conditions.names == ["grayscale"]
    assert pipeline.conditions.dropouts == [0.2]
    gray = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8), "L")
    for kind in ("ddpm", "ddim", "dpm"):
        pipeline.scheduler = make_sampler(pipeline.scheduler, kind)
        first = pipeline(gray, num_images_per_input=2, num_inference_steps=3, guidance=2.0, seed=5,
                         output_type="latent").images
        again = pipeline(gray, num_images_per_input=2, num_inference_steps=3, guidance=2.0, seed=5,
                         output_type="latent").images
        assert first.shape == (2, 3, 32, 32) and torch.equal(first, again)
    with pytest.raises(CondiffError, match="1 condition"):
        pipeline(gray, guidance=[1.0, 2.0])


def test_pipeline_inputs_and_output_types_agree(colorize_model):
    """PIL inputs, a tensor of the same images, and the condition channels give the same samples, and
    every output type is the same picture (PIL by default, as in diffusers)."""
    from condiff.images import to_model_tensor, to_uint8
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(str(colorize_model))
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    pictures = [Image.fromarray(array) for array in pixels]
    call = {"num_inference_steps": 2, "seed": 1, "output_type": "latent"}
    from_pil = pipeline(pictures, **call).images
    assert torch.equal(from_pil, pipeline(to_model_tensor(pixels), **call).images)
    assert torch.equal(from_pil, pipeline(condition_channels=pipeline.encode(pictures), **call).images)
    as_pil = pipeline(pictures, num_inference_steps=2, seed=1).images
    assert [image.size for image in as_pil] == [(32, 32), (32, 32)]
    assert np.array_equal(np.stack([np.asarray(image) for image in as_pil]), to_uint8(from_pil))
    as_np = pipeline(pictures, num_inference_steps=2, seed=1, output_type="np").images
    assert as_np.shape == (2, 32, 32, 3) and 0 <= as_np.min() and as_np.max() <= 1
    (as_pt,) = pipeline(pictures, num_inference_steps=2, seed=1, output_type="pt", return_dict=False)
    assert torch.allclose(as_pt * 2 - 1, from_pil.clamp(-1, 1), atol=1e-6)
    with pytest.raises(CondiffError, match="needs an input image"):
        pipeline(num_inference_steps=2)
    with pytest.raises(CondiffError, match="output_type"):
        pipeline(pictures, output_type="jpeg")


def test_an_unconditional_folder_loads_as_the_same_pipeline(tmp_path):
    from condiff.model_folder import load_pipeline
    from condiff.sampling import generate
    from condiff.training.from_recipe import train_recipe

    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=1)))
    pipeline = load_pipeline(tmp_path / "run")
    assert pipeline.conditions.names == [] and pipeline.conditions.channels == 0
    images = pipeline(batch_size=3, num_inference_steps=2, seed=4, output_type="latent", palette="off").images
    assert torch.equal(images, generate(pipeline.denoiser, pipeline.unet, pipeline.scheduler, 3, 2, seed=4).images)
    with pytest.raises(CondiffError, match="unconditional"):
        pipeline(Image.new("L", (8, 8)), num_inference_steps=2)


def test_colorize_cli_and_task_mismatch(colorize_model, tmp_path, capsys):
    source = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(source)
    out = tmp_path / "out.png"
    assert main(["colorize", str(source), "--model", str(colorize_model), "--out", str(out), "--steps", "2",
                 "--full-res", "--num", "2", "--gif"]) == 0
    assert Image.open(tmp_path / "out-0.png").size == (32, 32)
    full = Image.open(tmp_path / "out-1-fullres.png")
    assert full.size == (64, 48)
    # The full-resolution output keeps the input's own lightness.
    from skimage.color import rgb2lab

    lightness_in = rgb2lab(np.asarray(Image.open(source)) / 255.0)[..., 0]
    lightness_out = rgb2lab(np.asarray(full) / 255.0)[..., 0]
    assert np.abs(lightness_in - lightness_out).mean() < 1.5
    assert Image.open(tmp_path / "out.gif").n_frames >= 2
    capsys.readouterr()
    assert main(["sketch2img", str(source), "--model", str(colorize_model), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "this model was trained on conditions [grayscale]; sketch2img needs sketch" in err
    assert not (tmp_path / "s.png").exists()
    assert main(["sample", "--model", str(colorize_model), "--out", str(tmp_path / "g.png")]) == 2
    assert "needs an input image" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not an image", None])
def test_conditional_cli_rejects_bad_input(colorize_model, tmp_path, capsys, content):
    source = tmp_path / "input.png"
    if content is None:
        source.mkdir()
    else:
        source.write_bytes(content)
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")
    assert main(["colorize", str(source), "--model", str(colorize_model), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("condiff: error:") and "input.png" in err and "\n" not in err
    assert out.read_bytes() == b"previous result"


def test_encode_and_list_commands(tmp_path, capsys):
    drawing = Image.new("RGB", (200, 120), "white")
    from PIL import ImageDraw

    ImageDraw.Draw(drawing).line([(10, 10), (190, 110)], fill="black", width=4)
    drawing.save(tmp_path / "d.png")
    assert main(["encode", "--condition", "sketch", str(tmp_path / "d.png"), "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (128, 128)
    assert main(["conditions", "list"]) == 0
    assert "grayscale" in capsys.readouterr().out
    assert main(["encode", "--condition", "nope", str(tmp_path / "d.png"), "--out", str(tmp_path / "x.png")]) == 2


@pytest.mark.slow
def test_out_of_tree_plugin_from_the_docs_trains_through_an_entry_point(tmp_path):
    """The plugin package of docs/plugins.md, built and pip-installed from the docs alone, is found by
    name; a model trained only on it records the package, runs through `condiff generate` and
    `DiffusionPipeline.from_pretrained`, and where the package is missing says what to install."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    package = tmp_path / "my-blur"
    (package / "my_blur").mkdir(parents=True)
    (package / "my_blur" / "__init__.py").write_text("")
    (package / "my_blur" / "condition.py").write_text(re.search(r"```python\n(.*?)```", docs, re.S).group(1))
    toml = re.search(r"```toml\n(.*?)```", docs, re.S).group(1)
    (package / "pyproject.toml").write_text(textwrap.dedent(toml))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(package)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    Image.new("RGB", (48, 48), (200, 40, 40)).save(tmp_path / "photo.png")
    run, out = tmp_path / "run", tmp_path / "out.png"
    script = textwrap.dedent(f"""
        import sys
        import condiff
        from condiff.cli.main import main
        from condiff.config import recipe_from_dict
        from condiff.conditions.registry import list_conditions
        from condiff.model_folder import load_pipeline
        from condiff.training.from_recipe import train_recipe
        from tests.conftest import tiny_values
        assert "my_blur" not in sys.modules
        values = tiny_values({str(run)!r}, max_steps=2)
        values["conditions"] = [{{"name": "blur", "radius": 1}}]
        train_recipe(recipe_from_dict(values))
        pipeline = load_pipeline({str(run)!r})
        assert pipeline.conditions.names == ["blur"], pipeline.conditions.names
        assert pipeline.conditions.encoders[0].config.radius == 1
        assert pipeline.conditions.config.conditions[0]["package"] == "my-blur"
        assert "blur" in list_conditions()
        assert main(["generate", "--model", {str(run)!r}, "--input", {str(tmp_path / 'photo.png')!r},
                     "--steps", "2", "--out", {str(out)!r}]) == 0
        from diffusers import DiffusionPipeline
        loaded = DiffusionPipeline.from_pretrained({str(run)!r})
        assert loaded.conditions.names == ["blur"]
        print("plugin ok")
    """)
    base = {**os.environ, "OMP_NUM_THREADS": "1"}
    env = {**base, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plugin ok" in done.stdout
    assert Image.open(out).size == (32, 32)
    # Without the package: one line that names it.
    missing = subprocess.run([sys.executable, "-m", "condiff", "generate", "--model", str(run), "--input",
                              str(tmp_path / "photo.png"), "--out", str(tmp_path / "again.png")],
                             capture_output=True, text=True, timeout=300,
                             env={**base, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])})
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "pip install my-blur" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_warm_start_from_a_trained_unconditional_run_with_two_conditions(tmp_path):
    """init_from the core's output: the UNet is widened for sketch + grayscale, then trained and saved."""
    from safetensors.torch import load_file

    from condiff.model_folder import load_pipeline
    from condiff.training.from_recipe import build_parts, train_recipe

    train_recipe(recipe_from_dict(tiny_values(tmp_path / "base", max_steps=2)))
    base = load_file(str(tmp_path / "base" / "unet" / "diffusion_pytorch_model.safetensors"))
    values = conditional_values(tmp_path / "cond", [{"name": "sketch", "dropout": 0.3}, {"name": "grayscale"}],
                                max_steps=2)
    values["model"] = {**values["model"], "init_from": str(tmp_path / "base")}
    recipe = recipe_from_dict(values)
    unet = build_parts(recipe).unet
    assert unet.config.in_channels == 5
    assert torch.equal(unet.conv_in.weight[:, :3], base["conv_in.weight"])
    assert torch.equal(unet.conv_in.weight[:, 3:], torch.zeros_like(unet.conv_in.weight[:, 3:]))
    train_recipe(recipe)
    pipeline = load_pipeline(str(tmp_path / "cond"))
    assert pipeline.conditions.names == ["sketch", "grayscale"]
    images = pipeline(Image.new("L", (64, 64), 200), num_inference_steps=2, guidance=[2.0, 1.0]).images
    assert len(images) == 1 and images[0].size == (32, 32)


def test_warm_start_adds_channels_after_those_the_model_was_trained_with(tmp_path):
    """A sketch model continues with sketch `fill` (one channel more, at the end, starting at zero); a
    model whose conditions the recipe does not begin with is refused in one line."""
    from safetensors.torch import load_file

    from condiff.training.from_recipe import build_parts, train_recipe

    train_recipe(recipe_from_dict(conditional_values(tmp_path / "lines", [{"name": "sketch"}], max_steps=1)))
    before = load_file(str(tmp_path / "lines" / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    values = conditional_values(tmp_path / "filled", [{"name": "sketch", "fill": True}], max_steps=1)
    values["model"] = {**values["model"], "init_from": str(tmp_path / "lines")}
    unet = build_parts(recipe_from_dict(values)).unet
    assert unet.config.in_channels == 5
    assert torch.equal(unet.conv_in.weight[:, :4], before)
    assert not unet.conv_in.weight[:, 4].any()
    values["conditions"] = [{"name": "grayscale"}, {"name": "sketch"}]
    with pytest.raises(CondiffError, match="input channels") as refused:
        build_parts(recipe_from_dict(values))
    assert len(str(refused.value).splitlines()) == 1


def test_missing_optional_warm_start_trains_from_scratch(tmp_path):
    from condiff.training.from_recipe import build_parts

    values = conditional_values(tmp_path / "run", [{"name": "grayscale"}])
    values["model"] = {**values["model"], "init_from": str(tmp_path / "absent"), "init_required": False}
    unet = build_parts(recipe_from_dict(values)).unet
    assert unet.config.in_channels == 4
    values["model"]["init_required"] = True
    with pytest.raises(CondiffError, match="absent"):
        build_parts(recipe_from_dict(values))


def test_colorize_takes_several_files_and_folders(colorize_model, tmp_path, capsys):
    folder = tmp_path / "grays"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(single)
    common = ["--model", str(colorize_model), "--steps", "2"]
    # Files beside their inputs, a folder into FOLDER-colorized/, the model loaded once.
    assert main(["colorize", str(single), str(folder), *common]) == 0
    assert (tmp_path / "single-colorized.png").exists()
    assert sorted(p.name for p in (tmp_path / "grays-colorized").iterdir()) == ["a-colorized.png", "b-colorized.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.jpg", "notes.txt"]  # inputs untouched
    # --out-dir and --num: every input gets N outputs with the same seeds.
    out_dir = tmp_path / "outs"
    assert main(["colorize", str(folder), *common, "--out-dir", str(out_dir), "--num", "2"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["a-colorized-0.png", "a-colorized-1.png",
                                                         "b-colorized-0.png", "b-colorized-1.png"]
    capsys.readouterr()
    # Mistakes are one line before any work: --out with several inputs, clashing names, a bad input.
    (tmp_path / "other").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "other" / "a.png")
    (tmp_path / "empty").mkdir()
    for argv, message in [
        ([str(single), str(folder), "--out", str(tmp_path / "x.png")], "with 3 inputs use --out-dir"),
        ([str(folder), str(tmp_path / "other"), "--out-dir", str(tmp_path / "clash")], "would both write"),
        ([str(folder), str(tmp_path / "missing.png"), "--out-dir", str(tmp_path / "bad")], "missing.png: file not"),
        ([str(tmp_path / "empty"), "--out-dir", str(tmp_path / "bad")], "empty: a folder without images"),
        ([str(folder), str(folder / "notes.txt"), "--out-dir", str(tmp_path / "bad")], "notes.txt"),
    ]:
        assert main(["colorize", *argv, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not (tmp_path / "clash").exists() and not (tmp_path / "bad").exists()
