"""`ConditionalDDPMPipeline`: a diffusers pipeline whose UNet also sees condition channels.

Components: `unet` (input = image + condition channels), `scheduler` (any of DDPM, DDIM, DPM-Solver++;
swap with `condiff.sampling.make_sampler` or diffusers' `from_config`) and `conditions` (a
`ConditionStack` recording which encoders, in which order, with which settings). An unconditional model
is the same pipeline with an empty stack, so every command samples through this one entry point.
`save_pretrained`/`from_pretrained` round-trip all three, and the sampler the commands use
(`sampler`, `sampler_steps` in model_index.json): a call without `num_inference_steps` samples as
`condiff colorize` does. Importing condiff registers the class with diffusers, so
`DiffusionPipeline.from_pretrained(folder)` loads a conditional folder too. This module path is public
API: it is recorded in saved `model_index.json` files. `palette` (config) is the training data's colours
when it had few (condiff.palette); calls use it as their `palette` argument says. A condition that fixes
the figure's place (sketch `fill`) keeps the output's silhouette there (condiff.silhouette).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from condiff.conditions.stack import ConditionStack
from condiff.config import GUIDANCE_RANGE
from condiff.errors import CondiffError
from condiff.images import to_pil_images
from condiff.palette import PaletteProjection, from_hex, palette_tensor, resolve_mode, snap_to_palette
from condiff.palette_head import PaletteHead, head_config
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, Samples, generate, make_sampler
from condiff.silhouette import SILHOUETTE_MODES, SilhouetteProjection, snap_keeping_silhouette

OneInput = Image.Image | Sequence[Image.Image] | torch.Tensor
# PIL images or a tensor of images in [-1, 1] for every condition, or {condition name: its own images}.
Inputs = OneInput | Mapping[str, OneInput]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")



@dataclass
class ConditionalPipelineOutput(BaseOutput):
    """`images` as `output_type` asked; `trajectory` holds the recorded reverse process (`record=True`)."""

    images: Any
    trajectory: Samples | None = None


def check_silhouette(silhouette: str) -> None:
    """Before sampling, so a misspelt mode costs nothing."""
    if silhouette not in SILHOUETTE_MODES:
        raise CondiffError(f"silhouette {silhouette!r}: choose one of {', '.join(SILHOUETTE_MODES)}")


def chain(steers: list) -> Callable | None:
    """One sampler steer that applies `steers` in order (None for none)."""
    if len(steers) <= 1:
        return steers[0] if steers else None

    def steer(scheduler, model_output, x_t, t, index):
        for each in steers:
            model_output = each(scheduler, model_output, x_t, t, index)
        return model_output
    return steer


def check_output_type(output_type: str) -> None:
    """Before sampling, so a misspelt output type costs nothing."""
    if output_type not in OUTPUT_TYPES:
        raise CondiffError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")


def postprocess(images: torch.Tensor, output_type: str) -> Any:
    """Samples in the model's range [-1, 1] as diffusers' output types: "pil" (a list of RGB images),
    "np" (N, H, W, 3) floats in [0, 1], "pt" (N, 3, H, W) in [0, 1], or "latent" (unchanged, [-1, 1])."""
    check_output_type(output_type)
    if output_type == "pil":
        return to_pil_images(images)
    if output_type == "latent":
        return images
    unit = (images / 2 + 0.5).clamp(0, 1)
    return unit if output_type == "pt" else unit.permute(0, 2, 3, 1).numpy()


class ConditionalDDPMPipeline(DiffusionPipeline):
    def __init__(self, unet, scheduler, conditions: ConditionStack, sampler: str = DEFAULT_SAMPLER,
                 sampler_steps: int = DEFAULT_SAMPLER_STEPS, palette: list[str] | None = None,
                 palette_frequencies: list[float] | None = None, self_condition: bool = False,
                 palette_head: bool = False, pixel_likelihood: bool = False,
                 pixel_likelihood_until: int | None = None) -> None:
        """`scheduler` is the training scheduler as saved; `sampler` and `sampler_steps` are how a call
        without `num_inference_steps` samples (`condiff.sampling.make_sampler` kinds); `palette` is the
        training data's colours ("#rrggbb" strings) or None, and `palette_frequencies` each colour's share
        of the data's pixels. `self_condition`: the UNet's last 3 input channels take its previous
        estimate of the clean image (`model.self_condition` of the recipe). `palette_head`: the UNet outputs
        one logit per palette colour (`model.palette_head`, condiff.palette_head), added to each noisy pixel's
        log-likelihood when `pixel_likelihood` (heads trained before it have no such key), fading out by
        timestep `pixel_likelihood_until` when given."""
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, conditions=conditions)
        if palette is not None:
            from_hex(palette)  # checked now, not at the first call
            palette = list(palette)
        if palette_frequencies is not None:
            palette_frequencies = [float(f) for f in palette_frequencies]
            if palette is None or len(palette_frequencies) != len(palette):
                raise CondiffError("palette_frequencies needs one share per palette colour")
        if palette_head and (palette is None or len(palette) != unet.config.out_channels):
            raise CondiffError(f"a palette head needs one palette colour per UNet output ({unet.config.out_channels})")
        self.register_to_config(sampler=sampler, sampler_steps=sampler_steps, palette=palette,
                                palette_frequencies=palette_frequencies, self_condition=bool(self_condition))
        self.register_to_config(**head_config(palette_head, pixel_likelihood, pixel_likelihood_until))

    @property
    def resolution(self) -> int:
        return self.unet.config.sample_size

    @property
    def palette(self) -> torch.Tensor | None:
        """The saved palette as (P, 3) floats in [-1, 1], or None."""
        colors = self.config.get("palette")
        return None if colors is None else palette_tensor(from_hex(colors), self.device)

    @property
    def palette_frequencies(self) -> torch.Tensor | None:
        """Each palette colour's share of the training pixels (P,), or None."""
        shares = self.config.get("palette_frequencies")
        return None if shares is None else torch.tensor(shares, dtype=torch.float32)

    @property
    def head(self) -> PaletteHead | None:
        """The head a `palette_head` UNet's outputs go through, or None for a UNet that outputs images."""
        if not self.config.get("palette_head", False):
            return None
        return PaletteHead.from_saved(self.palette, self.config)

    def palette_mode(self, palette: str) -> str:
        """"off", "snap" or "project" for a call's `palette` ("auto" and the others, condiff.palette)."""
        return resolve_mode(palette, self.config.get("palette") is not None)

    def guidance_scales(self, guidance: float | Sequence[float]) -> list[float]:
        """One scale per condition: a single number applies to every condition. Checked here, so the
        commands, the app and Python callers all refuse NaN, infinities and absurd scales."""
        count = len(self.conditions.encoders)
        scales = [float(guidance)] * count if isinstance(guidance, int | float) else [float(g) for g in guidance]
        if len(scales) != count:
            raise CondiffError(f"--guidance: this model has {count} condition(s) ({', '.join(self.conditions.names)}) "
                               f"but {len(scales)} scales were given; give one, or one per condition")
        for scale in scales:
            if not GUIDANCE_RANGE.low <= scale <= GUIDANCE_RANGE.high:  # False for NaN too
                raise CondiffError(f"--guidance {scale}: give a number from {GUIDANCE_RANGE.low:g} to "
                                   f"{GUIDANCE_RANGE.high:g} ({GUIDANCE_RANGE.why})")
        return scales

    def encode(self, images: Inputs) -> torch.Tensor:
        """The condition channels for input images: PIL images of any size and mode, or a tensor of RGB
        images in [-1, 1] (N, 3, H, W), read exactly as the same images saved as PNG would be. One set of
        images feeds every condition; a mapping {condition name: images} gives each condition its own."""
        if isinstance(images, Mapping):
            images = {name: _as_pil_list(value) for name, value in images.items()}
        else:
            images = _as_pil_list(images)
        return self.conditions.encode_inputs(images, self.resolution)

    @torch.no_grad()
    def __call__(
        self,
        images: Inputs | None = None,
        num_images_per_input: int = 1,
        num_inference_steps: int | None = None,
        guidance: float | Sequence[float] = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        seed: int | None = None,
        batch_size: int = 1,
        condition_channels: torch.Tensor | None = None,
        output_type: str = "pil",
        record: bool = False,
        return_dict: bool = True,
        palette: str = "auto",
        silhouette: str = "auto",
    ) -> ConditionalPipelineOutput | tuple:
        """Generate `num_images_per_input` images for each input image, grouped by input.

        A conditional model takes `images` (see `encode`) or precomputed `condition_channels`
        (N, C, H, W); an unconditional one takes neither and makes `batch_size` images. Noise comes from
        `generator` as in diffusers, or with `seed` image i uses a generator seeded with seed + i (what
        the commands' --seed does). Without `num_inference_steps` the saved training scheduler samples as
        the commands do (`sampler`, `sampler_steps` of the config); a scheduler you set is kept. `record=True`
        keeps every step in `.trajectory` (for denoising GIFs). `palette`: "auto" (the default) uses the
        model's palette when it has one, "project" pulls the last steps toward it and snaps, "snap" only
        snaps the result, "off" ignores it (condiff.palette). `silhouette`: "auto" (the default) keeps the
        output's figure where the conditions fix one (sketch `fill`: the drawn shapes; condiff.silhouette),
        "off" lets the model draw freely.
        """
        check_output_type(output_type)
        check_silhouette(silhouette)
        mode = self.palette_mode(palette)
        scheduler, steps = self._sampler(num_inference_steps)
        condition = self._condition(images, condition_channels)
        if condition is not None:
            condition = condition.repeat_interleave(num_images_per_input, dim=0)
        # A condition that fixes the output's lightness (grayscale) limits the palette to its colours.
        luma = None
        if condition is not None and mode != "off":
            luma = self.conditions.known_luma(condition.to(self.device))
        palette, frequencies = self.palette, self.palette_frequencies
        steers = [PaletteProjection(palette, steps, luma_target=luma, frequencies=frequencies)] \
            if mode == "project" else []
        figure = None
        if condition is not None and silhouette == "auto":
            figure = self.conditions.known_figure(condition.to(self.device))
        if figure is not None:  # first: the palette pulls the image with its silhouette
            steers.insert(0, SilhouetteProjection(figure))
        steer = chain(steers)
        run = {"seed": seed, "generator": generator, "record": record, "progress": self.progress_bar,
               "steer": steer, "self_condition": self.config.get("self_condition", False),
               "head": self.head}
        if condition is None:
            samples = generate(self.unet, scheduler, batch_size, steps, **run)
        else:
            samples = generate(self.unet, scheduler, len(condition), steps, condition=condition,
                               guidance=self.guidance_scales(guidance),
                               condition_slices=self.conditions.channel_slices, **run)
        if mode != "off":
            snapped = snap_to_palette(samples.images, palette.cpu(), None if luma is None else luma.cpu(),
                                      frequencies=frequencies)
            if figure is not None:
                snapped = snap_keeping_silhouette(snapped, samples.images, figure.cpu(), palette.cpu())
            samples.images = snapped
        output = postprocess(samples.images, output_type)
        if not return_dict:
            return (output,)
        return ConditionalPipelineOutput(images=output, trajectory=samples if record else None)

    def _sampler(self, num_inference_steps: int | None):
        """(scheduler, steps) of this call: the default sampler only replaces the saved training scheduler."""
        if num_inference_steps is not None:
            return self.scheduler, num_inference_steps
        steps = self.config.get("sampler_steps", DEFAULT_SAMPLER_STEPS)
        if type(self.scheduler) is DDPMScheduler:
            return make_sampler(self.scheduler, self.config.get("sampler", DEFAULT_SAMPLER), steps), steps
        return self.scheduler, steps

    def _condition(self, images, condition_channels: torch.Tensor | None) -> torch.Tensor | None:
        """The condition channels of this call; None for an unconditional model."""
        if not self.conditions.channels:
            if images is not None or condition_channels is not None:
                raise CondiffError("this model is unconditional: it takes no input image")
            return None
        if condition_channels is not None:
            if condition_channels.shape[1] != self.conditions.channels:
                raise CondiffError(f"condition_channels has {condition_channels.shape[1]} channels; this model's "
                                   f"conditions ({', '.join(self.conditions.names)}) have {self.conditions.channels}")
            return condition_channels
        if images is None:
            names = ", ".join(self.conditions.names)
            raise CondiffError(f"this model needs an input image for its conditions ({names})")
        return self.encode(images)


def _as_pil_list(images: OneInput) -> list[Image.Image]:
    if isinstance(images, torch.Tensor):
        return to_pil_images(images)
    if isinstance(images, Image.Image):
        return [images]
    return list(images)
