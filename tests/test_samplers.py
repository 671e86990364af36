"""The few-step samplers keep the training scheduler's clamp of the predicted clean image."""

import pytest
import torch

from condiff.config import SchedulerConfig
from condiff.model import build_scheduler
from condiff.sampling import make_sampler


def one_step_from_noise(train_scheduler, kind: str) -> torch.Tensor:
    """One sampler step from pure noise by a model that has learnt nothing (its output is 0)."""
    sampler = make_sampler(train_scheduler, kind, 1)
    sampler.set_timesteps(1)
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return sampler.step(torch.zeros_like(noise), sampler.timesteps[0], noise).prev_sample


@pytest.mark.parametrize("beta_schedule,prediction_type", [("linear", "epsilon"), ("scaled_linear", "epsilon"),
                                                           ("squaredcos_cap_v2", "v_prediction")])
@pytest.mark.parametrize("kind", ["dpm", "dpm-logsnr", "ddim"])
def test_one_step_from_noise_stays_in_the_image_range(beta_schedule, prediction_type, kind):
    # Output 0 implies x_0 = x_T / sqrt(alpha_bar_T): about 150 x_T on linear betas. DDPM clamps that
    # to [-1, 1]; every sampler made from its config must do the same.
    scheduler = build_scheduler(SchedulerConfig(beta_schedule=beta_schedule, prediction_type=prediction_type))
    assert one_step_from_noise(scheduler, kind).abs().max() <= 1.0 + 1e-6


def test_dpm_logsnr_spends_more_of_its_steps_at_low_noise():
    scheduler = build_scheduler(SchedulerConfig())  # the default: squared-cosine betas
    timesteps = {}
    for kind in ("dpm", "dpm-logsnr"):
        sampler = make_sampler(scheduler, kind, 20)
        sampler.set_timesteps(20)
        timesteps[kind] = sampler.timesteps.tolist()
    assert timesteps["dpm"][0] == timesteps["dpm-logsnr"][0] == 999  # both start from pure noise
    assert timesteps["dpm"][-1] == 49 and timesteps["dpm-logsnr"][-1] < 5
    low = {kind: sum(t < 100 for t in steps) for kind, steps in timesteps.items()}
    assert low["dpm-logsnr"] >= 2 * low["dpm"]


def test_dpm_leaves_an_unclamped_schedule_unclamped():
    scheduler = build_scheduler(SchedulerConfig(beta_schedule="linear", prediction_type="epsilon"))
    scheduler.register_to_config(clip_sample=False)
    assert one_step_from_noise(scheduler, "dpm").abs().max() > 10


@pytest.mark.parametrize("task_name", ["unconditional", "colorize"])
def test_bfloat16_samples_are_close_to_float32_ones(task_name):
    # --precision bfloat16 computes the UNet in bfloat16; the steps between stay float32, so the images
    # differ from float32's by rounding, not by being another model's.
    from condiff.evaluation.held_out import held_out_nouns
    from condiff.tasks import TASKS

    task = TASKS[task_name]
    inputs = held_out_nouns(4, 7, 32) if task.condition else None
    images = {}
    for precision in ("float32", "bfloat16"):
        pipeline = task.load(None, "cpu", "dpm", 6, precision)
        assert next(pipeline.unet.parameters()).dtype == getattr(torch, precision)
        images[precision] = task.run(pipeline, inputs, num=4, steps=6, seed=3, output_type="pt",
                                     palette="off", **({"lightness": "off"} if task.condition else {})).images
    assert images["bfloat16"].dtype == torch.float32
    levels = (images["bfloat16"] - images["float32"]).abs() * 255
    assert 0 < levels.mean() < 4


def test_an_unknown_precision_is_refused_by_name():
    from condiff.errors import CondiffError
    from condiff.tasks import UNCONDITIONAL

    with pytest.raises(CondiffError, match="--precision float16: choose one of float32, bfloat16"):
        UNCONDITIONAL.load(None, "cpu", "dpm", 4, "float16")
