"""The denoising objective as one function, shared by every task.

Condition channels, when a task has them, arrive ready-made and are concatenated to the noisy image;
nothing here knows which task it serves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_target(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to output, by the scheduler's `prediction_type`."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    return clean


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma (Hang et al. 2023, arxiv 2303.09556): easy, low-noise
    timesteps stop dominating the gradient, which speeds up convergence."""
    alpha_bar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alpha_bar / (1 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped


def diffusion_loss(
    unet,
    scheduler,
    clean: torch.Tensor,
    condition: torch.Tensor | None = None,
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """Mean squared error of the UNet's prediction at random timesteps (Ho et al. 2020, arxiv 2006.11239),
    optionally Min-SNR weighted."""
    noise = torch.randn_like(clean)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    model_input = noisy if condition is None else torch.cat([noisy, condition.to(noisy)], dim=1)
    prediction = unet(model_input, timesteps).sample
    target = diffusion_target(scheduler, clean, noise, timesteps)
    if min_snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * min_snr_weights(scheduler, timesteps, min_snr_gamma)).mean()
