"""Self-conditioning (arxiv 2208.04202): the UNet also sees its own previous estimate of the clean image,
in training and in every sampler, and the model folder says so."""

import json

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from condiff.config import recipe_from_dict
from condiff.denoiser import Denoiser
from condiff.errors import CondiffError
from condiff.model import predict_x0
from condiff.model_folder import load_pipeline
from condiff.sampling import generate, make_sampler
from condiff.training.from_recipe import train_recipe
from condiff.training.loss import diffusion_loss
from tests.conftest import tiny_values


class Recording(torch.nn.Module):
    """A stand-in UNet (3 image channels + `extra` input channels) that records every input it is given."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.net = UNet2DModel(sample_size=8, in_channels=3 + extra, out_channels=3, block_out_channels=(8, 16),
                               norm_num_groups=8, layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                               up_block_types=("UpBlock2D",) * 2)
        self.config = self.net.config
        self.inputs: list[torch.Tensor] = []
        self.timesteps: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def forward(self, x, t):
        self.inputs.append(x.detach().clone())
        self.timesteps.append(torch.as_tensor(t).clone())
        out = self.net(x, t)
        self.outputs.append(out.sample.detach().clone())
        return out


def self_conditioned(tmp_path, name="run", **model):
    values = tiny_values(tmp_path / name)
    values["model"] = {**values["model"], "self_condition": True, **model}
    return recipe_from_dict(values)


@pytest.mark.parametrize("kind", ["ddpm", "ddim", "dpm"])
def test_each_sampling_step_gets_the_clean_image_the_previous_step_implied(kind):
    torch.manual_seed(0)
    unet = Recording(extra=3).eval()
    scheduler = make_sampler(DDPMScheduler(num_train_timesteps=50, prediction_type="v_prediction"), kind)
    generate(Denoiser(self_condition=True), unet, scheduler, 2, 4, seed=0)
    assert len(unet.inputs) == 4
    assert unet.inputs[0][:, 3:].abs().max() == 0  # no estimate before the first step
    for step in range(1, 4):
        x_t, t = unet.inputs[step - 1][:, :3], scheduler.timesteps[step - 1]
        expected = predict_x0(scheduler, unet.outputs[step - 1], x_t, t)
        assert torch.allclose(unet.inputs[step][:, 3:], expected, atol=1e-6)
        assert expected.abs().max() > 0


def test_training_gives_half_the_batch_its_first_estimate_and_the_rest_zeros():
    torch.manual_seed(0)
    unet = Recording(extra=3)
    scheduler = DDPMScheduler(num_train_timesteps=50, prediction_type="v_prediction")
    clean = torch.rand(64, 3, 8, 8) * 2 - 1
    loss = diffusion_loss(Denoiser(self_condition=True), unet, scheduler, clean)
    first, second = unet.inputs  # a pass for the estimates, then the trained one
    assert second.shape == (64, 6, 8, 8)
    given = second[:, 3:].flatten(1).abs().amax(dim=1) > 0
    assert 16 <= int(given.sum()) <= 48  # about half
    assert len(first) == int(given.sum())
    assert torch.equal(first[:, :3], second[given, :3]) and first[:, 3:].abs().max() == 0
    assert torch.equal(unet.timesteps[0], unet.timesteps[1][given])
    expected = predict_x0(scheduler, unet.outputs[0], first[:, :3], unet.timesteps[0])
    assert torch.allclose(second[given, 3:], expected, atol=1e-6)
    loss.backward()  # the estimate is an input: the gradient flows through the second pass only
    assert all(p.grad is not None for p in unet.parameters())


def test_a_self_conditioned_model_trains_saves_and_samples_through_every_entry_point(tmp_path):
    out = train_recipe(self_conditioned(tmp_path)).output_dir
    settings = json.loads((out / "denoiser" / "config.json").read_text())
    assert settings["self_condition"] is True
    assert json.loads((out / "unet" / "config.json").read_text())["in_channels"] == 6
    pipeline = load_pipeline(out)
    assert pipeline.denoiser.config.self_condition is True
    images = pipeline(batch_size=2, num_inference_steps=3, seed=0, output_type="latent").images
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    again = load_pipeline(out)(batch_size=2, num_inference_steps=3, seed=0, output_type="latent").images
    assert torch.equal(images, again)
    # plain diffusers still loads the UNet (it needs condiff's pipeline to sample), as the card says
    assert UNet2DModel.from_pretrained(out, subfolder="unet").config.in_channels == 6
    assert "Self-conditioned" in (out / "README.md").read_text()


def test_a_conditional_model_takes_its_estimate_after_the_conditions_and_guidance_keeps_it(tmp_path):
    values = tiny_values(tmp_path / "run")
    values["model"] = {**values["model"], "self_condition": True}
    values["conditions"] = [{"name": "grayscale", "dropout": 0.5}]
    out = train_recipe(recipe_from_dict(values)).output_dir
    pipeline = load_pipeline(out)
    assert pipeline.unet.config.in_channels == 3 + 1 + 3 and pipeline.denoiser.config.self_condition
    gray = torch.rand(2, 3, 32, 32) * 2 - 1
    for guidance in (1.0, 2.0):
        images = pipeline(gray, num_inference_steps=2, seed=0, guidance=guidance, output_type="latent").images
        assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


def test_a_plain_model_warm_starts_a_self_conditioned_one_unchanged_until_trained(tmp_path):
    from condiff.training.from_recipe import build_parts

    base = train_recipe(recipe_from_dict(tiny_values(tmp_path / "base"))).output_dir
    recipe = self_conditioned(tmp_path, init_from=str(base))
    unet = build_parts(recipe).unet
    assert unet.config.in_channels == 6
    old = load_pipeline(base).unet
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 40])
    with torch.no_grad():
        expected = old(x, t).sample
        for estimate in (torch.zeros_like(x), torch.rand_like(x)):
            assert torch.allclose(unet(torch.cat([x, estimate], dim=1), t).sample, expected, atol=1e-5)


def test_a_self_conditioned_model_cannot_warm_start_a_plain_one(tmp_path):
    from condiff.training.from_recipe import build_parts

    base = train_recipe(self_conditioned(tmp_path, name="base")).output_dir
    values = tiny_values(tmp_path / "run")
    values["model"] = {**values["model"], "init_from": str(base)}
    with pytest.raises(CondiffError, match="self-conditioned; set model.self_condition: true"):
        build_parts(recipe_from_dict(values))


@pytest.mark.parametrize(("value", "problem"), [
    ("yes", "self_condition = 'yes' must be one of false, true"),
    (False, "in_channels = 6, but the image and this model's conditions have 3 channels"),
])
def test_a_folder_whose_self_condition_does_not_fit_its_unet_is_one_clear_error(tmp_path, value, problem):
    out = train_recipe(self_conditioned(tmp_path)).output_dir
    settings_file = out / "denoiser" / "config.json"
    settings = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**settings, "self_condition": value}))
    with pytest.raises(CondiffError, match=problem):
        load_pipeline(out)
