"""The network and its noise schedule, built from a recipe: diffusers `UNet2DModel` + `DDPMScheduler`, and
the schedule's arithmetic (alpha_bar, and the clean image a prediction implies, either way).

What the network's output means is `condiff.denoiser`; reading and writing model folders is
`condiff.model_folder`; sampling, `condiff.sampling`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from condiff.config import ModelConfig, SchedulerConfig

if TYPE_CHECKING:
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

IMAGE_CHANNELS = 3


def build_unet(config: ModelConfig, resolution: int, *, in_channels: int = IMAGE_CHANNELS,
               out_channels: int = IMAGE_CHANNELS) -> UNet2DModel:
    """A fresh UNet shaped by the recipe, `in_channels` wide at its input and `out_channels` at its output
    (a Denoiser's `in_channels` and `out_channels` say how many its layout needs)."""
    from diffusers import UNet2DModel

    down = ["AttnDownBlock2D" if attn else "DownBlock2D" for attn in config.attention]
    up = ["AttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(config.attention)]
    return UNet2DModel(
        sample_size=resolution,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=tuple(config.channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=config.layers_per_block,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        dropout=config.dropout,
    )


def widen_unet_input(unet: UNet2DModel, extra_channels: int) -> UNet2DModel:
    """Add condition input channels to a pretrained UNet's first convolution.

    The new channels' weights start at zero and the original weights and bias are copied, so before
    any training the widened model's output equals the original's whatever the condition.
    """
    import torch

    old = unet.conv_in
    new = torch.nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size,
                          old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight)
    unet.register_to_config(in_channels=old.in_channels + extra_channels)
    return unet


def use_matmul_attention(unet: UNet2DModel) -> None:
    """Give the UNet's attention layers diffusers' plain matmul processor (`AttnProcessor`) for training.

    On a CPU, torch's fused attention (diffusers' default) is slow to differentiate (docs/benchmarks.md,
    training levers). Same arithmetic up to rounding; the saved model does not record processors, so
    sampling is unchanged.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor

    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())


def build_scheduler(config: SchedulerConfig) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**asdict(config), clip_sample=True)  # the recipe's scheduler keys are DDPMScheduler's


# --- the schedule's arithmetic ------------------------------------------------------------------


def alpha_bar_at(scheduler, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """alpha_bar at timestep t for the batch x_t: a scalar, or (N, 1, 1, 1) for (N,) timesteps."""
    import torch

    alpha_bar = scheduler.alphas_cumprod.to(x_t)[torch.as_tensor(t, device=x_t.device).long()]
    return alpha_bar.view(-1, 1, 1, 1) if alpha_bar.ndim else alpha_bar


def predict_x0(scheduler, model_output: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """The clean image implied by the model output (the scheduler's `prediction_type`) at timestep t, one for
    the batch or (N,) per sample, clamped to the image range."""
    alpha_bar = alpha_bar_at(scheduler, x_t, t)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        x0 = (x_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    elif prediction_type == "v_prediction":
        x0 = alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * model_output
    else:
        x0 = model_output
    return x0.clamp(-1, 1)


def output_for_x0(scheduler, x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """The model output that implies the clean image `x0` at x_t, timestep t (predict_x0's inverse): what a
    sampler is given to steer toward a chosen x0, and what a palette head's expected colours imply."""
    alpha_bar = alpha_bar_at(scheduler, x_t, t)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return (alpha_bar.sqrt() * x_t - x0) / (1 - alpha_bar).sqrt()
    return x0
