"""The denoising objective as one function, shared by every task.

Condition channels, when a task has them, arrive ready-made; the model's `Denoiser` lays out the UNet's
input (with a self-conditioned model's own estimate) and reads its output, so nothing here knows which task
it serves. An optional consistency term is handed in as a function of the predicted clean image and the
condition channels (the condition stack's `consistency`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from condiff.denoiser import Denoiser
from condiff.model import predict_x0


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
    ratio = snr(scheduler, timesteps)
    clipped = ratio.clamp(max=gamma)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return clipped / ratio
    if prediction_type == "v_prediction":
        return clipped / (ratio + 1)
    return clipped


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at each timestep."""
    alpha_bar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    return alpha_bar / (1 - alpha_bar)


def draw_timesteps(scheduler, count: int, device, sampling: str = "uniform") -> torch.Tensor:
    """`count` training timesteps: uniform, or "cubic" (T2I-Adapter, arxiv 2302.08453): t = (1 - u^3) T for
    uniform u, so that half of them lie above 0.875 T, where the layout is decided and only the condition
    can tell it."""
    total = scheduler.config.num_train_timesteps
    if sampling == "uniform":
        return torch.randint(0, total, (count,), device=device)
    drawn = torch.rand(count, device=device)
    return ((1 - drawn**3) * total).long().clamp(0, total - 1)


@dataclass
class Consistency:
    """A condition-consistency term (ControlNet++, arxiv 2404.07987): at the lowest-noise `timesteps`
    share of timesteps, where the predicted clean image is sharp, `weight` times how far it disobeys the
    condition (`loss`: predicted images, condition channels and the training images -> (N,) losses) joins
    the loss."""

    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    weight: float
    timesteps: float


def diffusion_loss(
    denoiser: Denoiser,
    unet,
    scheduler,
    clean: torch.Tensor,
    condition: torch.Tensor | None = None,
    min_snr_gamma: float | None = None,
    consistency: Consistency | None = None,
    ce_weight: float = 1.0,
    timestep_sampling: str = "uniform",
) -> torch.Tensor:
    """Mean squared error of the UNet's prediction at random timesteps (Ho et al. 2020, arxiv 2006.11239),
    drawn as `timestep_sampling` says (`draw_timesteps`), optionally Min-SNR weighted, plus the consistency
    term when one is given with a condition.

    A palette head's prediction is the output its expected colours imply, and `ce_weight` times the
    cross-entropy of its odds is added. With Min-SNR that term is weighted by min(SNR, gamma) / gamma too:
    at high noise the colour cannot be known (the cross-entropy alone learnt the Nouns' shapes far more
    slowly, benchmarks/results/NOTES.md); at low noise it asks for sure, exact colours, which the Min-SNR
    weighted squared error barely rewards once the odds are near one colour."""
    images, clean = clean, denoiser.diffused(clean)
    noise = torch.randn_like(clean)
    timesteps = draw_timesteps(scheduler, clean.shape[0], clean.device, timestep_sampling)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    prediction, logits = denoiser.training_output(unet, scheduler, noisy, timesteps, condition)
    target = diffusion_target(scheduler, clean, noise, timesteps)
    if min_snr_gamma is None:
        loss = F.mse_loss(prediction.float(), target.float())
    else:
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * min_snr_weights(scheduler, timesteps, min_snr_gamma)).mean()
    if logits is not None and ce_weight:
        cross_entropy = denoiser.head.loss(logits, images)
        if min_snr_gamma is not None:
            cross_entropy = cross_entropy * snr(scheduler, timesteps).clamp(max=min_snr_gamma) / min_snr_gamma
        loss = loss + ce_weight * cross_entropy.mean()
    if consistency is not None and condition is not None:
        loss = loss + consistency.weight * consistency_term(
            denoiser, scheduler, consistency, prediction.float(), noisy.float(), timesteps, condition.float(),
            images.float())
    return loss


def consistency_term(denoiser: Denoiser, scheduler, consistency: Consistency, prediction: torch.Tensor,
                     noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor,
                     images: torch.Tensor) -> torch.Tensor:
    """The mean consistency loss of the batch's low-noise samples (0, keeping the graph, when none is);
    `images` are the training images (pixel space) the condition was made from."""
    low = timesteps < consistency.timesteps * scheduler.config.num_train_timesteps
    if not bool(low.any()):
        return prediction.sum() * 0.0
    predicted = denoiser.image(predict_x0(scheduler, prediction[low], noisy[low], timesteps[low]), condition[low])
    return consistency.loss(predicted, condition[low], images[low]).mean()
