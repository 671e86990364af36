"""Does the model use its condition? The condition-use gap, measured during training.

On one fixed batch of images training never sees, the loss with each image's own condition channels and
with the conditions shuffled across the batch (image i given the channels of image i+1), in three bands of
timesteps. The gap, shuffled minus true, is how much the network's prediction depends on the condition it
was given: near zero, the network ignores it (its output would be the same for any input). At high noise
only the condition can say what the image will be, so that band is where a conditional model should gain
most; at low noise the noisy image already holds the answer.

The noise and timesteps are drawn once from a private generator, and the UNet runs without dropout, so the
numbers are comparable from one log to the next and the training RNG is never touched (resume stays exact).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condiff.denoiser import Denoiser
from condiff.training.loss import diffusion_target

# (name, low, high) as shares of the scheduler's timesteps; with 1000 of them: t < 250, 250..749, >= 750.
BANDS = (("low", 0.0, 0.25), ("mid", 0.25, 0.75), ("high", 0.75, 1.0))
PROBE_IMAGES = 8  # per band: true and shuffled together make one forward pass of 16 images


class ConditionUseProbe:
    """The gap on `clean` images ([-1, 1], N >= 2) with their `condition` channels, for one model."""

    def __init__(self, denoiser: Denoiser, scheduler, clean: torch.Tensor, condition: torch.Tensor,
                 seed: int = 0, about: str = "images") -> None:
        if len(clean) < 2:
            raise ValueError("the condition-use gap needs at least 2 images, to give each another's condition")
        self.denoiser, self.scheduler = denoiser, scheduler
        self.about = f"{len(clean)} {about}"  # which images, for the model card
        self.clean, self.condition = denoiser.diffused(clean), condition
        self.shuffled = condition.roll(1, dims=0)  # a derangement: no image keeps its own condition
        generator = torch.Generator().manual_seed(seed)
        total = scheduler.config.num_train_timesteps
        self.noise = torch.randn(self.clean.shape, generator=generator)
        self.timesteps = {}
        for name, low, high in BANDS:
            first, end = int(low * total), max(int(high * total), int(low * total) + 1)
            self.timesteps[name] = torch.randint(first, end, (len(clean),), generator=generator)

    @torch.no_grad()
    def measure(self, unet) -> dict[str, float]:
        """{"<band> true", "<band> shuffled", "<band> gap"} per band, and "gap": their mean gap."""
        device = next(unet.parameters()).device
        clean, noise = self.clean.to(device), self.noise.to(device)
        both = torch.cat([self.condition, self.shuffled]).to(device)
        was_training = unet.training
        unet.eval()  # no dropout: the same weights give the same numbers
        try:
            results: dict[str, float] = {}
            for name, _, _ in BANDS:
                t = self.timesteps[name].to(device)
                # Each noisy image twice: once with the true conditions, once with the shuffled ones.
                noisy = self.scheduler.add_noise(clean, noise, t).repeat(2, 1, 1, 1)
                target = diffusion_target(self.scheduler, clean, noise, t).float()
                model_input = self.denoiser.model_input(noisy, both, self.denoiser.initial_estimate(noisy))
                output = self.denoiser.output(unet, self.scheduler, model_input, t.repeat(2))
                true, shuffled = (F.mse_loss(half, target).item() for half in output.chunk(2))
                results.update({f"{name} true": true, f"{name} shuffled": shuffled, f"{name} gap": shuffled - true})
        finally:
            unet.train(was_training)
        results["gap"] = sum(results[f"{name} gap"] for name, _, _ in BANDS) / len(BANDS)
        return results

    def summary(self, values: dict[str, float]) -> dict:
        """`values` (from `measure`) as the model card shows them: which images, and per band its timesteps,
        the loss with true and with shuffled conditions, and the gap."""
        total = self.scheduler.config.num_train_timesteps
        rows = []
        for name, low, high in BANDS:
            first, end = int(low * total), int(high * total)  # as text: "t < 250", "250 <= t < 750", "t >= 750"
            timesteps = f"t < {end}" if low == 0 else f"t >= {first}" if high == 1 else f"{first} <= t < {end}"
            rows.append([timesteps, values[f"{name} true"], values[f"{name} shuffled"], values[f"{name} gap"]])
        return {"on": self.about, "bands": rows, "gap": values["gap"]}
