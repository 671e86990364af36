"""A palette head: the UNet says, for every pixel, how likely each palette colour is.

With `model.palette_head: true` the UNet outputs one logit per colour of the data's palette instead of
three colour channels. Its estimate of the clean image is the expected colour under those odds, so where
the model is sure it is exactly a palette colour: no snapping needed. Cross-entropy against each clean
pixel's palette colour makes that estimate the posterior mean of the clean image, what a denoiser must give
(score interpolation, Dieleman et al. 2022, "Continuous diffusion for categorical data", arxiv 2211.15089);
condiff.training.loss adds it, weighted, to the usual squared error of the output the estimate implies.

The UNet's logits are added to each noisy pixel's own log-likelihood under each colour (`pixel_likelihood`):
x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) noise is Gaussian about each colour, so Bayes' rule gives
log p(colour | x_t) = log-likelihood of the pixel + what the rest of the image says. The term is exact and
cheap; it makes the odds sure at low noise, where a small UNet could not tell close colours apart from its
features (at t = 5 a head without it got 60 to 75 % of a real Noun's pixels exactly, one with it 99.8 %:
benchmarks/results/NOTES.md). The UNet learns the rest: what the rest of the image says.
`likelihood_until` (the recipe's model.pixel_likelihood_until) fades the term out linearly from full weight
at t = 0 to none at that timestep, so that at higher noise the UNet alone decides, as in a head without it;
the UNet is trained with the same weights, so it learns the rest at every timestep.

The samplers never see the logits: the model's `condiff.denoiser.Denoiser` turns them into the output the
scheduler expects (its `prediction_type`), so every sampler, guidance and steering step work unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condiff.model import IMAGE_CHANNELS, alpha_bar_at, output_for_x0


class PaletteHead:
    """The palette a head's logits index: (P, 3) colours in [-1, 1], in the order of the UNet's outputs.
    `pixel_likelihood` adds each noisy pixel's log-likelihood to the UNet's logits (heads saved before it
    existed have no such key and are read without it), fading out by timestep `likelihood_until` if given."""

    def __init__(self, palette: torch.Tensor, pixel_likelihood: bool = True,
                 likelihood_until: int | None = None) -> None:
        self.palette = palette.float()
        self.pixel_likelihood = pixel_likelihood
        self.likelihood_until = likelihood_until

    @property
    def channels(self) -> int:
        return len(self.palette)

    def logits(self, scheduler, output: torch.Tensor, noisy: torch.Tensor, timesteps) -> torch.Tensor:
        """The colour logits (N, P, H, W) of the UNet's `output` at the noisy image x_t (N, 3, H, W), one
        timestep for the batch or (N,) per sample: the output plus, with `pixel_likelihood`, the Gaussian
        log-likelihood of each pixel of x_t under each colour (up to a constant per pixel, which softmax
        ignores): (2 sqrt(a) x_t . c - a |c|^2) / (2 (1 - a)), a = alpha_bar; with `likelihood_until` times
        a weight falling linearly from 1 at t = 0 to 0 at that timestep."""
        if not self.pixel_likelihood:
            return output.float()
        noisy = noisy.float()
        alpha_bar = alpha_bar_at(scheduler, noisy, timesteps).reshape(-1, 1, 1).expand(len(noisy), 1, 1)
        palette = self.palette.to(noisy.device)
        # One batched product: [x_t, 1] . [2 sqrt(a) c, -a |c|^2] / (2 (1 - a)) per image and colour.
        weights = torch.cat([2 * alpha_bar.sqrt() * palette, -alpha_bar * palette.square().sum(dim=1, keepdim=True)],
                            dim=2) / (2 * (1 - alpha_bar))
        if self.likelihood_until is not None:
            t = torch.as_tensor(timesteps, device=noisy.device).float().reshape(-1, 1, 1)
            weights = weights * (1 - t / self.likelihood_until).clamp(min=0)
        pixels = torch.cat([noisy, torch.ones_like(noisy[:, :1])], dim=1)
        return output.float() + torch.einsum("nkhw,npk->nphw", pixels, weights)

    def clean_image(self, logits: torch.Tensor) -> torch.Tensor:
        """The expected clean image (N, 3, H, W) under the logits' odds (N, P, H, W)."""
        odds = logits.float().softmax(dim=1)
        return torch.einsum("nphw,pc->nchw", odds, self.palette.to(odds.device))

    def colour_indices(self, clean: torch.Tensor) -> torch.Tensor:
        """Each pixel's nearest palette colour (N, H, W): the data's own colour where it is on the palette."""
        pixels = clean.float().permute(0, 2, 3, 1).reshape(-1, IMAGE_CHANNELS)
        nearest = torch.cdist(pixels, self.palette.to(pixels.device)).argmin(dim=1)
        return nearest.reshape(clean.shape[0], *clean.shape[2:])

    def loss(self, logits: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per image (N,), averaged over its pixels."""
        per_pixel = F.cross_entropy(logits.float(), self.colour_indices(clean), reduction="none")
        return per_pixel.mean(dim=(1, 2))

    def output_from_logits(self, scheduler, logits: torch.Tensor, noisy: torch.Tensor, timesteps) -> torch.Tensor:
        """What a UNet of the scheduler's `prediction_type` would output, given the clean image the odds
        `logits` make at x_t (`noisy`)."""
        return output_for_x0(scheduler, self.clean_image(logits), noisy, timesteps)
