"""The training objective: Min-SNR weighting (the default since the defaults sweep) and its limits."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from condiff.config import Recipe
from condiff.denoiser import Denoiser
from condiff.training.loss import diffusion_loss, min_snr_weights

PLAIN, GRAY = Denoiser(), Denoiser(condition_channels=[1])  # a UNet of the image, and of it and one channel

SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def snr_of(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alpha_bar = scheduler.alphas_cumprod[timesteps]
    return alpha_bar / (1 - alpha_bar)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_epsilon_weights_clip_only_the_easy_timesteps(schedule):
    scheduler = DDPMScheduler(beta_schedule=schedule, prediction_type="epsilon")
    timesteps = torch.arange(1000)
    weights, snr = min_snr_weights(scheduler, timesteps, 5.0), snr_of(scheduler, timesteps)
    assert torch.isfinite(weights).all()
    assert torch.allclose(weights[snr <= 5], torch.ones(int((snr <= 5).sum())))
    assert torch.allclose(weights[snr > 5], 5 / snr[snr > 5])
    assert (snr > 5).any() and (snr <= 5).any()  # both regimes are exercised


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_v_prediction_weights_are_min_snr_over_snr_plus_one(schedule):
    scheduler = DDPMScheduler(beta_schedule=schedule, prediction_type="v_prediction")
    timesteps = torch.arange(1000)
    weights, snr = min_snr_weights(scheduler, timesteps, 5.0), snr_of(scheduler, timesteps)
    assert torch.allclose(weights, snr.clamp(max=5) / (snr + 1))
    assert (weights <= 1).all() and (weights >= 0).all()


def test_a_gamma_above_every_snr_gives_the_plain_loss():
    scheduler = DDPMScheduler(prediction_type="epsilon")
    unet = UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=8, layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    clean = torch.rand(4, 3, 8, 8) * 2 - 1
    torch.manual_seed(0)
    plain = diffusion_loss(PLAIN, unet, scheduler, clean)
    torch.manual_seed(0)
    weighted = diffusion_loss(PLAIN, unet, scheduler, clean, min_snr_gamma=1e12)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-5)


def test_min_snr_is_the_default_and_can_be_turned_off(tmp_path):
    from condiff.config import load_recipe

    assert Recipe().train.min_snr_gamma == 5.0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  min_snr_gamma: null\n")
    assert load_recipe(str(recipe)).train.min_snr_gamma is None


def tiny_unet(in_channels: int = 3) -> UNet2DModel:
    return UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=3, block_out_channels=(8, 16),
                       norm_num_groups=8, layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))


def test_the_consistency_term_applies_only_at_low_noise_and_adds_its_weighted_loss():
    from condiff.training.loss import Consistency

    scheduler = DDPMScheduler(prediction_type="v_prediction")
    unet, clean, condition = tiny_unet(4), torch.rand(4, 3, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    seen = []

    def disobedience(predicted, channels, truth):
        seen.append(len(predicted))
        assert torch.equal(truth, clean)  # the training images the condition came from
        return torch.ones(len(predicted))

    torch.manual_seed(0)
    plain = diffusion_loss(GRAY, unet, scheduler, clean, condition)
    torch.manual_seed(0)
    everywhere = diffusion_loss(GRAY, unet, scheduler, clean, condition,
                                consistency=Consistency(disobedience, 0.5, 1.0))
    assert everywhere.item() == pytest.approx(plain.item() + 0.5, rel=1e-5) and seen == [4]
    torch.manual_seed(0)
    barely = diffusion_loss(GRAY, unet, scheduler, clean, condition, consistency=Consistency(disobedience, 0.5, 1e-6))
    assert barely.item() == pytest.approx(plain.item(), rel=1e-5)  # timestep 0 only: no sample drawn there


def test_consistency_needs_a_condition_that_offers_it(tmp_path):
    from condiff.config import load_recipe
    from condiff.errors import CondiffError
    from condiff.training.from_recipe import train_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  size: 8\nconditions:\n  - name: canny\ntrain:\n  consistency_weight: 0.5\n"
                      f"  output_dir: {tmp_path / 'run'}\n")
    with pytest.raises(CondiffError, match=r"train.consistency_weight = 0.5: no condition .* \(conditions: canny\)"):
        train_recipe(load_recipe(str(recipe)))
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_cubic_timesteps_lie_mostly_at_high_noise_and_uniform_ones_do_not():
    from condiff.training.loss import draw_timesteps

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    torch.manual_seed(0)
    cubic = draw_timesteps(scheduler, 20_000, "cpu", "cubic")
    uniform = draw_timesteps(scheduler, 20_000, "cpu", "uniform")
    assert 0 <= int(cubic.min()) and int(cubic.max()) <= 999
    assert abs(float((cubic >= 875).float().mean()) - 0.5) < 0.02  # 1 - 0.5 ** 3 = 0.875
    assert abs(float((uniform >= 875).float().mean()) - 0.125) < 0.02
