"""model.diffuse: chroma: the network denoises only the chroma, and each output is the gray input's luma with it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from condiff.config import recipe_from_dict
from condiff.images import chroma, from_luma_chroma, luma, to_model_tensor
from condiff.model_folder import load_pipeline
from condiff.training.from_recipe import train_recipe
from tests.conftest import one_line_error, tiny_values, write_recipe_text


def chroma_values(output_dir, conditions=({"name": "grayscale", "dropout": 0.2},), **model):
    values = tiny_values(output_dir, max_steps=2)
    values["conditions"] = list(conditions)
    values["model"] = {**values["model"], "diffuse": "chroma", **model}
    return values


@pytest.fixture(scope="module")
def chroma_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("chroma") / "model"
    train_recipe(recipe_from_dict(chroma_values(out, self_condition=True)))
    return out


def test_luma_and_chroma_are_the_image():
    images = torch.rand(3, 3, 5, 5) * 2 - 1
    assert torch.allclose(from_luma_chroma(luma(images), chroma(images)), images, atol=1e-6)
    assert chroma(images).abs().max() <= 1


def test_the_saved_model_diffuses_two_channels_and_reads_the_luma_from_its_condition(chroma_model):
    unet = json.loads((chroma_model / "unet" / "config.json").read_text())
    denoiser = json.loads((chroma_model / "denoiser" / "config.json").read_text())
    assert denoiser["luma_channel"] == 0
    assert (unet["in_channels"], unet["out_channels"]) == (2 + 1 + 2, 2)  # chroma, gray, self-conditioning
    assert "Chroma only" in (chroma_model / "README.md").read_text()


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_every_output_has_the_gray_inputs_lightness_with_every_step_off(chroma_model, guidance):
    pipeline = load_pipeline(chroma_model)
    gray = Image.fromarray((torch.arange(32 * 32).reshape(32, 32) % 251).to(torch.uint8).numpy(), "L")
    out = pipeline(gray, num_images_per_input=2, num_inference_steps=3, seed=0, guidance=guidance,
                   output_type="latent", palette="off", lightness="off").images
    wanted = to_model_tensor(np.asarray(gray.convert("RGB"))[None])[:, :1]
    assert (luma(out) - wanted).abs().max() < 1e-4
    assert chroma(out).abs().mean() > 0.01  # with colour


def test_a_chroma_beyond_the_rgb_cube_keeps_its_luma_with_less_colour():
    y = torch.tensor([0.9, -0.95, 0.0]).view(3, 1, 1, 1)
    strong = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.9, 0.9]]).view(3, 2, 1, 1)
    images = from_luma_chroma(y, strong)
    assert images.abs().max() <= 1
    assert torch.allclose(luma(images), y, atol=1e-6)
    shortened = chroma(images)
    assert torch.allclose(shortened / shortened.norm(dim=1, keepdim=True), strong / strong.norm(dim=1, keepdim=True),
                          atol=1e-5)  # the same hue


def test_chroma_needs_a_condition_that_gives_the_luma(tmp_path, capsys):
    recipe = write_recipe_text(tmp_path, json.dumps(chroma_values(tmp_path / "run", conditions=[])))
    one_line_error(capsys, ["train", str(recipe)], "model.diffuse: chroma needs a condition that gives")
    assert not (tmp_path / "run").exists()


def test_chroma_and_a_palette_head_are_refused(tmp_path, capsys):
    values = chroma_values(tmp_path / "run", palette_head=True, pixel_likelihood_until=10)
    values["data"]["palette"] = "auto"
    recipe = write_recipe_text(tmp_path, json.dumps(values))
    one_line_error(capsys, ["train", str(recipe)], "palette_head needs the whole image diffused")


def test_a_warm_start_from_a_chroma_model_keeps_its_channels_meaning(tmp_path, capsys):
    """A chroma UNet of gray (2 + 1 input channels) is no unconditional model: a recipe whose conditions do
    not begin with its grayscale is refused, not widened with the gray channel read as a sketch."""
    first = tmp_path / "gray"
    train_recipe(recipe_from_dict(chroma_values(first)))
    capsys.readouterr()  # its progress lines
    sketch, gray = {"name": "sketch"}, {"name": "grayscale"}
    values = chroma_values(tmp_path / "run", conditions=[sketch, gray], init_from=str(first))
    recipe = write_recipe_text(tmp_path, json.dumps(values))
    one_line_error(capsys, ["train", str(recipe)], "its UNet takes 3 input channels")
    assert not (tmp_path / "run").exists()

    values = chroma_values(tmp_path / "run", conditions=[gray, sketch], init_from=str(first))
    train_recipe(recipe_from_dict(values))  # the same grayscale first, a new condition after it: widened
    unet = json.loads((tmp_path / "run" / "unet" / "config.json").read_text())
    assert (unet["in_channels"], unet["out_channels"]) == (2 + 1 + 1, 2)
