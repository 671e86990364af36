"""The denoiser and its noise schedule, built from a recipe: diffusers `UNet2DModel` + `DDPMScheduler`.

Reading and writing them as model folders is `condiff.model_folder`; sampling with them, `condiff.sampling`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.config import ModelConfig, SchedulerConfig

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel

IMAGE_CHANNELS = 3


def input_channels(condition_channels: int, self_condition: bool) -> int:
    """The UNet's input width: the noisy image, the condition channels, then (self-conditioning) its own
    previous estimate of the clean image."""
    return IMAGE_CHANNELS + condition_channels + (IMAGE_CHANNELS if self_condition else 0)


def build_unet(config: ModelConfig, resolution: int, extra_in_channels: int = 0,
               out_channels: int = IMAGE_CHANNELS) -> UNet2DModel:
    """A fresh UNet shaped by the recipe; `extra_in_channels` are condition channels concatenated
    to the noisy image, followed by the self-conditioning channels when the recipe asks for them.
    It outputs the image's channels, or `out_channels` (a palette head's one per colour)."""
    from diffusers import UNet2DModel

    down = ["AttnDownBlock2D" if attn else "DownBlock2D" for attn in config.attention]
    up = ["AttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(config.attention)]
    return UNet2DModel(
        sample_size=resolution,
        in_channels=input_channels(extra_in_channels, config.self_condition),
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


def build_scheduler(config: SchedulerConfig) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        prediction_type=config.prediction_type,
        clip_sample=True,
    )
