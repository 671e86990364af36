"""The reverse process: the samplers, and one loop for every sampler, with or without condition channels.

Samplers are diffusers schedulers made from the training scheduler's config (`make_sampler`), so they
share its noise schedule. `generate` is a plain function (k-diffusion style): it is handed the model's
`Denoiser` (what the UNet's input and output mean), the UNet and a sampler, optionally condition channels
(given to the UNet at every step) and steering steps (condiff.steering), applied in order to
each step's predicted clean image. The noise has the channels the denoiser diffuses (the image's 3, or a
chroma's 2); steering steps and the results see RGB images (`Denoiser.image`).

Importing this module is cheap (no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from condiff.config import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, SAMPLERS, sampler_step_limit
from condiff.errors import CondiffError

if TYPE_CHECKING:
    import torch

    from condiff.denoiser import Denoiser
    from condiff.steering import SteeringContext, Step

__all__ = ["DEFAULT_SAMPLER", "DEFAULT_SAMPLER_STEPS", "SAMPLERS", "generate", "make_sampler"]


# --- samplers -----------------------------------------------------------------------------------


def make_sampler(train_scheduler, kind: str, steps: int | None = None):
    """Swap the training scheduler for a sampler with the same noise schedule (diffusers `from_config`);
    with `steps`, also check the sampler can take that many."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if kind not in SAMPLERS:
        raise CondiffError(f"unknown scheduler {kind!r}; choose one of {', '.join(SAMPLERS)}")
    if steps is not None:
        most = sampler_step_limit(kind, train_scheduler.config.num_train_timesteps)
        if not 1 <= steps <= most:
            raise CondiffError(f"--steps {steps}: this model takes 1 to {most} steps with the {kind} sampler")
    # "trailing" spacing starts sampling at the last training timestep (arxiv 2305.08891); a saved DDPM
    # config carries DDPM's "leading" default, which few-step samplers pay for (docs/benchmarks.md).
    spacing = {"timestep_spacing": "trailing"}
    if kind.startswith("dpm"):
        # Steps uniform in log-SNR (DPM-Solver's "logSNR" skip type, arxiv 2206.00927) spend more of them at low
        # noise, where the last pixel-level detail is decided (docs/benchmarks.md).
        if kind == "dpm-logsnr":
            spacing["use_lu_lambdas"] = True
        return DPMSolverMultistepScheduler.from_config(train_scheduler.config, algorithm_type="dpmsolver++",
                                                       **spacing, **_clip_like_ddpm(train_scheduler.config))
    return {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind].from_config(train_scheduler.config, **spacing)


def _clip_like_ddpm(config) -> dict:
    """DPM-Solver++ has no `clip_sample`; dynamic thresholding whose ceiling is the clip range clamps
    its predicted x_0 the way DDPM and DDIM do. Without the clamp an epsilon model on linear betas
    divides its error by sqrt(alpha_bar) ~ 0.006 at t = 999 (docs/benchmarks.md)."""
    if not config.get("clip_sample", False):
        return {}
    return {"thresholding": True, "sample_max_value": config.get("clip_sample_range", 1.0)}


# --- the reverse process ------------------------------------------------------------------------


@dataclass
class Samples:
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    noisy: list[torch.Tensor] = field(default_factory=list)  # x_t before each step (record=True)
    predicted: list[torch.Tensor] = field(default_factory=list)  # predicted x_0 at each step
    timesteps: list[int] = field(default_factory=list)


def generate(
    denoiser: Denoiser,
    unet,
    scheduler,
    num: int,
    steps: int,
    seed: int | None = 0,
    condition: torch.Tensor | None = None,
    record: bool = False,
    network: Callable[..., torch.Tensor] | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    steering: list[Step] = (),
    context: SteeringContext | None = None,
) -> Samples:
    """Sample `num` images in `steps` denoising steps, conditioned on `condition` channels if given.
    `network(unet, scheduler, model_input, t)` is what the sampler reads as the model's output at each step
    (default `denoiser.output`; the pipeline hands in its guided output).

    The noise comes from `generator` (one, or one per image, as in diffusers) when given, else from `seed`
    (image i from a generator seeded with seed + i), else (seed None) from torch's global RNG. `progress` wraps
    the timesteps (a progress bar). Each step of `steering` may replace each step's predicted clean image, in
    order (`Step.on_prediction`, sharing `context`); the sampler is given the output that implies it.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from condiff.model import output_for_x0, predict_x0

    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    size = unet.config.sample_size
    shape = (num, denoiser.image_channels, size, size)
    if generator is None and seed is not None:
        # CPU generators, one per image: the same seed gives the same images on every device, and a batch
        # equals the same images drawn one by one.
        generator = [torch.Generator().manual_seed(seed + i) for i in range(num)]
    x = randn_tensor(shape, generator=generator, dtype=torch.float32).to(device)
    if condition is not None:
        condition = condition.to(device=device, dtype=torch.float32)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    result = Samples(images=x)
    estimate = denoiser.initial_estimate(x)
    for index, t in enumerate((progress or iter)(scheduler.timesteps)):
        model_input = denoiser.model_input(scheduler.scale_model_input(x, t), condition, estimate).to(dtype)
        with torch.no_grad():
            model_output = (network or denoiser.output)(unet, scheduler, model_input, t)
        for step in steering:
            predicted = denoiser.image(predict_x0(scheduler, model_output, x, t), condition)
            steered = step.on_prediction(predicted, index, context)
            if steered is not None:
                model_output = output_for_x0(scheduler, denoiser.diffused(steered), x, t)
        estimate = denoiser.next_estimate(scheduler, model_output, x, t)
        if record:
            result.noisy.append(denoiser.image(x, condition).cpu())
            result.predicted.append(denoiser.image(predict_x0(scheduler, model_output, x, t), condition).cpu())
            result.timesteps.append(int(t))
        x = scheduler.step(model_output, t, x, generator=generator).prev_sample
    result.images = denoiser.image(x.clamp(-1, 1), condition).cpu()
    return result
