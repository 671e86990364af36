"""`Denoiser`: what the UNet's input and output mean, saved with the model as its `denoiser/` component
(k-diffusion's wrapper idea, as a diffusers `ModelMixin`/`ConfigMixin`):

- what is diffused: the image, or with `luma_channel` only its chroma (BT.601 Cb, Cr): that condition
  channel is each output's luma, given exactly, and the output is that luma with the denoised chroma (as
  regression colorizers predict colour given lightness, arxiv 1603.08511);
- the input: the noisy image (or chroma), each condition's channels (`condition_channels`), then with
  `self_condition` the model's previous estimate of the clean image (arxiv 2208.04202);
- the output: the scheduler's `prediction_type`, or with `palette_head` one logit per `palette` colour
  (condiff.palette_head), with the noisy pixel's likelihood (`pixel_likelihood`, until a timestep);
- the data's `palette` and its colours' shares (`palette_frequencies`), for steering (condiff.steering).

Training's loss and the sampling loop both call it, so a setting added here reaches both and is saved with
the model. It holds no UNet weights: the UNet is handed to each call (a distributed one in training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from condiff.conditions.stack import slices_for
from condiff.config import RANGES
from condiff.errors import CondiffError
from condiff.images import chroma, from_luma_chroma
from condiff.model import IMAGE_CHANNELS, predict_x0
from condiff.palette import MAX_PALETTE, from_hex, palette_tensor
from condiff.palette_head import PaletteHead
from condiff.rules import first_problem, hex_color, list_of, number, one_of, optional, whole
from condiff.steering.base import Step
from condiff.steering.palette import palette_steps

MAX_CONDITION_CHANNELS = 64  # channels of one condition (real ones have 1 or 2)
MAX_CONDITIONS = 16  # conditions of one model
MAX_TIMESTEPS = int(RANGES["scheduler.num_train_timesteps"].high)
CHROMA_CHANNELS = 2

# Every setting's rule: a saved folder is checked against them before anything is built from it.
RULES = {
    "condition_channels": list_of(whole(1, MAX_CONDITION_CHANNELS), MAX_CONDITIONS, least=0),
    "self_condition": one_of(False, True),  # 3 more input channels
    "palette": optional(list_of(hex_color, MAX_PALETTE)),  # the data's colours
    "palette_frequencies": optional(list_of(number(0, 1), MAX_PALETTE)),  # ... their shares
    "palette_head": one_of(False, True),  # one output per palette colour
    "pixel_likelihood": one_of(False, True),  # ... added to each noisy pixel's log-likelihood
    "pixel_likelihood_until": optional(whole(1, MAX_TIMESTEPS)),  # ... fading out by this timestep
    "luma_channel": optional(whole(0, MAX_CONDITION_CHANNELS * MAX_CONDITIONS - 1)),  # only chroma is diffused
}


class Denoiser(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, condition_channels: Sequence[int] = (), self_condition: bool = False,
                 palette: list[str] | None = None, palette_frequencies: list[float] | None = None,
                 palette_head: bool = False, pixel_likelihood: bool = False,
                 pixel_likelihood_until: int | None = None, luma_channel: int | None = None) -> None:
        """Every argument is checked (`RULES`, and how they fit together): a one-line CondiffError names the
        first that is wrong. `palette` is "#rrggbb" strings; `pixel_likelihood_until` counts only with
        `pixel_likelihood` (it is recorded as None without it); `luma_channel` counts the condition channels
        from 0."""
        super().__init__()
        # @register_to_config has recorded every argument, defaults included, before this body runs.
        values = {**self.config, "condition_channels": list(condition_channels)}
        problem = first_problem(values, RULES)
        if problem is None and palette_frequencies is not None and len(palette_frequencies) != len(palette or ()):
            problem = "palette_frequencies needs one share per palette colour"
        if problem is None and palette_head and not palette:
            problem = "palette_head is true but there is no palette"
        if problem is None and luma_channel is not None:
            channels = sum(values["condition_channels"])
            if luma_channel >= channels:
                problem = f"luma_channel = {luma_channel} but there are {channels} condition channels"
            elif palette_head:
                problem = "palette_head needs the whole image diffused, not only its chroma (luma_channel)"
        if problem is not None:
            raise CondiffError(problem)
        # Recorded as they act: no likelihood without a head, no fade without a likelihood.
        self.register_to_config(condition_channels=values["condition_channels"],
                                pixel_likelihood=bool(palette_head and pixel_likelihood))
        if not self.config.pixel_likelihood:
            self.register_to_config(pixel_likelihood_until=None)
        self.head = None
        if palette_head:
            self.head = PaletteHead(self.palette, self.config.pixel_likelihood, self.config.pixel_likelihood_until)
        # A component without weights writes no file; its only tensor is the input layout.
        self.register_buffer("layout", torch.tensor([self.image_channels, *values["condition_channels"],
                                                     self.image_channels if self_condition else 0]))

    # --- the layout -----------------------------------------------------------------------------

    @property
    def image_channels(self) -> int:
        """The channels that are diffused: the image's, or with `luma_channel` its chroma's."""
        return IMAGE_CHANNELS if self.config.luma_channel is None else CHROMA_CHANNELS

    @property
    def in_channels(self) -> int:
        """The UNet's input width: the image, the conditions, the self-conditioning estimate."""
        return self.image_channels * (2 if self.config.self_condition else 1) + sum(self.config.condition_channels)

    @property
    def out_channels(self) -> int:
        """The UNet's output width: the image's, or one per palette colour with a palette head."""
        return self.head.channels if self.head is not None else self.image_channels

    def diffused(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] as they are diffused: themselves, or with `luma_channel` their chroma."""
        return images if self.config.luma_channel is None else chroma(images)

    def image(self, diffused: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """`diffused`'s inverse: images (N, 3, H, W), with `luma_channel` the `condition`'s luma with this chroma."""
        if self.config.luma_channel is None:
            return diffused
        channel = self.config.luma_channel
        return from_luma_chroma(condition[:, channel:channel + 1].to(diffused), diffused)

    def model_input(self, noisy: torch.Tensor, condition: torch.Tensor | None = None,
                    estimate: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's input: the noisy image, then the condition channels, then the self-conditioning estimate."""
        parts = [noisy]
        if condition is not None:
            parts.append(condition.to(noisy))
        if estimate is not None:
            parts.append(estimate)
        return torch.cat(parts, dim=1) if len(parts) > 1 else noisy

    def unet_problem(self, unet_config: Mapping[str, Any]) -> str | None:
        """What makes a UNet of `unet_config` unfit for this layout (its input and output widths), or None."""
        if unet_config["in_channels"] != self.in_channels:
            parts = ("the image, this model's conditions and its self-conditioning estimate"
                     if self.config.self_condition else "the image and this model's conditions")
            return f"in_channels = {unet_config['in_channels']}, but {parts} have {self.in_channels} channels"
        if unet_config["out_channels"] != self.out_channels:
            why = ("one per colour of its palette head's palette" if self.head is not None else
                   "the chroma's 2 (luma_channel)" if self.config.luma_channel is not None else
                   "condiff samples 3-channel images (a palette head also needs palette_head: true)")
            return f"out_channels = {unet_config['out_channels']}, but this model needs {self.out_channels}: {why}"
        return None

    # --- the palette ----------------------------------------------------------------------------

    @property
    def palette(self) -> torch.Tensor | None:
        """The data's palette as (P, 3) floats in [-1, 1], or None."""
        colors = self.config.palette
        return None if colors is None else palette_tensor(from_hex(colors))

    def steering(self, modes: Mapping[str, str]) -> list[Step]:
        """The steps of a call's steering `modes` that the model's palette gives (condiff.steering.palette)."""
        shares = self.config.palette_frequencies  # each palette colour's share of the training pixels
        frequencies = None if shares is None else torch.tensor(shares, dtype=torch.float32)
        return palette_steps(modes["palette"], self.palette, frequencies)

    # --- the output -----------------------------------------------------------------------------

    def output(self, unet, scheduler, model_input: torch.Tensor, t) -> torch.Tensor:
        """One UNet pass on `model_input` at timestep(s) t, read as the scheduler's prediction type (float):
        a palette head's odds become the output their expected colour implies."""
        output = unet(model_input, t).sample
        if self.head is None:
            return output.float()
        noisy = model_input[:, :self.image_channels].float()
        return self.head.output_from_logits(scheduler, self.head.logits(scheduler, output, noisy, t), noisy, t)

    def guided_output(self, unet, scheduler, model_input: torch.Tensor, t, guidance: list[float]) -> torch.Tensor:
        """Classifier-free guidance with one scale per condition (Ho & Salimans 2022, arxiv 2207.12598): for
        each condition with a scale s != 1 the output is pushed away from the one made without that condition
        (its channels zeroed, "no condition"): out = full + sum_i (s_i - 1) * (full - without_i). With one
        condition this is the usual uncond + s * (cond - uncond)."""
        slices = slices_for(self.config.condition_channels)
        guided = [(s, sl) for s, sl in zip(guidance, slices, strict=True) if s != 1.0]
        if not guided:
            return self.output(unet, scheduler, model_input, t)
        variants = [model_input]
        for _, part in guided:
            dropped = model_input.clone()
            dropped[:, self.image_channels + part.start:self.image_channels + part.stop] = 0
            variants.append(dropped)
        outputs = self.output(unet, scheduler, torch.cat(variants), t).chunk(len(variants))
        full = outputs[0]
        result = full.clone()
        for (scale, _), without in zip(guided, outputs[1:], strict=True):
            result += (scale - 1.0) * (full - without)
        return result

    def training_output(self, unet, scheduler, noisy: torch.Tensor, t: torch.Tensor,
                        condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prediction, logits) of a training batch: the prediction in the scheduler's type, and a palette
        head's colour logits (None without one), computed once for both the squared error and the
        cross-entropy. A self-conditioned model is given its first estimates (`first_estimates`)."""
        model_input = self.model_input(noisy, condition)
        if self.config.self_condition:
            model_input = torch.cat([model_input, self.first_estimates(unet, scheduler, model_input, t)], dim=1)
        prediction = unet(model_input, t).sample
        if self.head is None:
            return prediction, None
        logits = self.head.logits(scheduler, prediction, noisy, t)
        return self.head.output_from_logits(scheduler, logits, noisy.float(), t), logits

    # --- self-conditioning ----------------------------------------------------------------------

    def first_estimates(self, unet, scheduler, model_input: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Self-conditioning's extra channels in training (arxiv 2208.04202): for a random half of the batch,
        the clean image the model estimates without them (a pass without gradient); zeros, "no estimate yet",
        for the other half. So the model learns both the first sampling step and every later one, where it
        is given its previous estimate. Costs one forward pass of half the batch."""
        noisy = model_input[:, :self.image_channels]
        estimates = torch.zeros_like(noisy)
        chosen = torch.rand(len(noisy), device=noisy.device) < 0.5
        if bool(chosen.any()):
            with torch.no_grad():
                first = unet(torch.cat([model_input[chosen], estimates[chosen]], dim=1), t[chosen]).sample
            if self.head is not None:
                first = self.head.clean_image(self.head.logits(scheduler, first, noisy[chosen], t[chosen]))
            else:
                first = predict_x0(scheduler, first.float(), noisy[chosen].float(), t[chosen])
            estimates[chosen] = first.to(noisy)
        return estimates

    def initial_estimate(self, x: torch.Tensor) -> torch.Tensor | None:
        """The self-conditioning input of the first sampling step (zeros: no estimate yet); None without it."""
        return torch.zeros_like(x) if self.config.self_condition else None

    def next_estimate(self, scheduler, model_output: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor | None:
        """The self-conditioning input of the next sampling step: the clean image this step's output implies."""
        return predict_x0(scheduler, model_output, x_t, t) if self.config.self_condition else None

    # --- warm starts ----------------------------------------------------------------------------

    def differences(self, other: Denoiser, keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
        """(key, this one's, the other's) for each of `keys` whose settings differ: a warm start goes on
        only where what the output means is the same."""
        return [(key, self.config[key], other.config[key]) for key in keys if self.config[key] != other.config[key]]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Denoiser:
        """A Denoiser from any mapping that holds some of its settings (a recipe's model section, an old
        folder's model_index.json): the keys it knows, the others ignored."""
        return cls(**{key: value for key, value in settings.items() if key in RULES})
