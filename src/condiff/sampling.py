"""The reverse process: the samplers, and one loop for every sampler, with or without condition channels.

Samplers are diffusers schedulers made from the training scheduler's config (`make_sampler`), so they
share its noise schedule. `generate` is a plain function (k-diffusion style): it is handed the UNet and
a sampler, and optionally condition channels that are concatenated to the noisy image at every step.
The noise has the image's 3 channels (the UNet's input may be wider; a palette head's output is).

Importing this module is cheap (no torch): recipes and `--help` read the sampler names from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from condiff.errors import CondiffError

if TYPE_CHECKING:
    import torch

    from condiff.palette_head import PaletteHead

# dpm = DPM-Solver++ on "trailing" timesteps; dpm-logsnr = DPM-Solver++ with steps uniform in log-SNR.
SAMPLERS = ("ddpm", "ddim", "dpm", "dpm-logsnr")
# The default sampler and steps were chosen by benchmarks/bench_sampling.py (docs/benchmarks.md, "Samplers").
DEFAULT_SAMPLER = "dpm"
DEFAULT_SAMPLER_STEPS = 20


# --- samplers -----------------------------------------------------------------------------------


def make_sampler(train_scheduler, kind: str, steps: int | None = None):
    """Swap the training scheduler for a sampler with the same noise schedule (diffusers `from_config`);
    with `steps`, also check the sampler can take that many."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler,
               "dpm-logsnr": DPMSolverMultistepScheduler}
    if kind not in classes:
        raise CondiffError(f"unknown scheduler {kind!r}; choose one of {', '.join(classes)}")
    if steps is not None:
        # diffusers' DPM-Solver++ fails (IndexError) when asked for every training timestep.
        most = train_scheduler.config.num_train_timesteps - kind.startswith("dpm")
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
    return classes[kind].from_config(train_scheduler.config, **spacing)


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

    def animation_frames(self, scale: int = 4) -> list:
        """GIF frames of the recorded reverse process (x_t beside predicted x_0), ending on the result."""
        from condiff.visualize import denoising_gif_frames

        return denoising_gif_frames(self.noisy + [self.images], self.predicted + [self.images], scale=scale,
                                    timesteps=self.timesteps + [0])


def predict_x0(scheduler, model_output: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """The clean image implied by the model output at timestep t, one for the batch or (N,) per sample
    (the GIF's right-hand side; the training's consistency loss)."""
    alpha_bar = alpha_bar_at(scheduler, x_t, t)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        x0 = (x_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    elif prediction_type == "v_prediction":
        x0 = alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * model_output
    else:
        x0 = model_output
    return x0.clamp(-1, 1)


def alpha_bar_at(scheduler, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """alpha_bar at timestep t for the batch x_t: a scalar, or (N, 1, 1, 1) for (N,) timesteps."""
    import torch

    alpha_bar = scheduler.alphas_cumprod.to(x_t)[torch.as_tensor(t, device=x_t.device).long()]
    return alpha_bar.view(-1, 1, 1, 1) if alpha_bar.ndim else alpha_bar


def output_for_x0(scheduler, x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """The model output that implies the clean image `x0` at x_t, timestep t, one for the batch or (N,) per
    sample (predict_x0's inverse): what a sampler is given to steer toward a chosen x0 (palette projection),
    and what a palette head's expected colours imply (condiff.palette_head)."""
    alpha_bar = alpha_bar_at(scheduler, x_t, t)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return (alpha_bar.sqrt() * x_t - x0) / (1 - alpha_bar).sqrt()
    return x0


def guided_output(unet, model_input: torch.Tensor, t, condition_slices: list[slice],
                  guidance: list[float]) -> torch.Tensor:
    """Classifier-free guidance with one scale per condition (Ho & Salimans 2022, arxiv 2207.12598).

    `model_input` holds the noisy image followed by every condition's channels. For each condition
    with a scale s != 1 the output is pushed away from the prediction made without that condition:
    out = full + sum_i (s_i - 1) * (full - without_i). With one condition this is the usual
    uncond + s * (cond - uncond); with all scales 1 it is the plain conditional output.
    """
    import torch

    from condiff.model import IMAGE_CHANNELS

    image_channels = IMAGE_CHANNELS
    guided = [(s, sl) for s, sl in zip(guidance, condition_slices, strict=True) if s != 1.0]
    variants = [model_input]
    for _, sl in guided:
        dropped = model_input.clone()
        dropped[:, image_channels + sl.start:image_channels + sl.stop] = 0  # zeros = "no condition"
        variants.append(dropped)
    outputs = unet(torch.cat(variants), t).sample.float().chunk(len(variants))
    full = outputs[0]
    result = full.clone()
    for (scale, _), without in zip(guided, outputs[1:], strict=True):
        result += (scale - 1.0) * (full - without)
    return result


def seeded_generators(seed: int, num: int) -> list[torch.Generator]:
    """One CPU generator per image, image i seeded with `seed + i`: the same seed gives the same images
    on every device, and a batch equals the same images drawn one by one."""
    import torch

    return [torch.Generator().manual_seed(seed + i) for i in range(num)]


def generate(
    unet,
    scheduler,
    num: int,
    steps: int,
    seed: int | None = 0,
    condition: torch.Tensor | None = None,
    record: bool = False,
    guidance: list[float] | None = None,
    condition_slices: list[slice] | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    steer: Callable | None = None,
    self_condition: bool = False,
    head: PaletteHead | None = None,
) -> Samples:
    """Sample `num` images in `steps` denoising steps, conditioned on `condition` channels if given
    (with classifier-free guidance: one scale per condition in `guidance`, channels in `condition_slices`).

    The noise comes from `generator` (one, or one per image, as in diffusers) when given, else from
    `seeded_generators(seed, num)`, else (seed None) from torch's global RNG. `progress` wraps the
    timesteps (a progress bar). `steer(scheduler, model_output, x_t, t, index)` may replace each
    step's model output (condiff.palette.PaletteProjection). A `self_condition` model is also given the
    clean image its previous step implied (zeros at the first step; arxiv 2208.04202). A palette-head
    UNet (`head`, condiff.palette_head) has its colour odds turned into the sampler's prediction type.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from condiff.model import IMAGE_CHANNELS

    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    size = unet.config.sample_size
    shape = (num, IMAGE_CHANNELS, size, size)
    if head is not None:
        from condiff.palette_head import PaletteDenoiser

        unet = PaletteDenoiser(unet, scheduler, head)
    if generator is None and seed is not None:
        generator = seeded_generators(seed, num)
    x = randn_tensor(shape, generator=generator, dtype=torch.float32).to(device)
    if condition is not None:
        condition = condition.to(device=device, dtype=torch.float32)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    result = Samples(images=x)
    guide = guidance is not None and any(scale != 1.0 for scale in guidance)
    estimate = torch.zeros_like(x) if self_condition else None
    for index, t in enumerate((progress or iter)(scheduler.timesteps)):
        model_input = scheduler.scale_model_input(x, t)
        if condition is not None:
            model_input = torch.cat([model_input, condition], dim=1)
        if estimate is not None:
            model_input = torch.cat([model_input, estimate], dim=1)
        with torch.no_grad():
            if guide:
                model_output = guided_output(unet, model_input.to(dtype), t, condition_slices, guidance)
            else:
                model_output = unet(model_input.to(dtype), t).sample.float()
        if steer is not None:
            model_output = steer(scheduler, model_output, x, t, index)
        if estimate is not None:
            estimate = predict_x0(scheduler, model_output, x, t)
        if record:
            result.noisy.append(x.cpu())
            result.predicted.append(predict_x0(scheduler, model_output, x, t).cpu())
            result.timesteps.append(int(t))
        x = scheduler.step(model_output, t, x, generator=generator).prev_sample
    result.images = x.clamp(-1, 1).cpu()
    return result
