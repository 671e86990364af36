"""`ConditionalDDPMPipeline`: a diffusers pipeline whose UNet also sees condition channels.

Components: `unet`, `scheduler` (DDPM, DDIM or DPM-Solver++; swap with `condiff.sampling.make_sampler` or
`from_config`), `conditions` (a `ConditionStack`: which encoders, in which order, with which settings) and
`denoiser` (condiff.denoiser: what the UNet's input and output mean). An unconditional model is the same
pipeline with an empty stack, so every command samples through it. `save_pretrained`/`from_pretrained`
round-trip all four and the commands' sampler (`sampler`, `sampler_steps`). This module path is public API
(saved model_index.json files name it). Steering (condiff.steering) is a list of steps the conditions and
the denoiser hand each call; the pipeline applies them in order and names none.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from condiff.conditions.stack import ConditionStack
from condiff.config import Range
from condiff.denoiser import Denoiser
from condiff.errors import CondiffError
from condiff.images import to_pil_images
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, Samples, generate, make_sampler
from condiff.steering import OPTIONS, check_modes
from condiff.steering.base import context_for, finished

OneInput = Image.Image | Sequence[Image.Image] | torch.Tensor
# PIL images or a tensor of images in [-1, 1] for every condition, or {condition name: its own images}.
Inputs = OneInput | Mapping[str, OneInput]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

# Classifier-free guidance scales: 0 ignores the condition, 1 follows it as trained; far beyond 10 images
# only saturate, and a non-finite scale makes every pixel NaN (a black image).
GUIDANCE_RANGE = Range(0.0, 50.0, "0 ignores the condition, 1 follows it as trained")


@dataclass
class ConditionalPipelineOutput(BaseOutput):
    """`images` as `output_type` asked; `trajectory` holds the recorded reverse process (`record=True`)."""

    images: Any
    trajectory: Samples | None = None


def postprocess(images: torch.Tensor, output_type: str) -> Any:
    """Samples in the model's range [-1, 1] as diffusers' output types: "pil" (a list of RGB images),
    "np" (N, H, W, 3) floats in [0, 1], "pt" (N, 3, H, W) in [0, 1], or "latent" (unchanged, [-1, 1])."""
    if output_type == "pil":
        return to_pil_images(images)
    if output_type == "latent":
        return images
    unit = (images / 2 + 0.5).clamp(0, 1)
    return unit if output_type == "pt" else unit.permute(0, 2, 3, 1).numpy()


class ConditionalDDPMPipeline(DiffusionPipeline):
    _optional_components = ["denoiser"]  # folders saved before it existed have none: a plain UNet

    def __init__(self, unet, scheduler, conditions: ConditionStack, denoiser: Denoiser | None = None,
                 sampler: str = DEFAULT_SAMPLER, sampler_steps: int = DEFAULT_SAMPLER_STEPS) -> None:
        """`scheduler` is the training scheduler as saved; `sampler` and `sampler_steps` are how a call
        without `num_inference_steps` samples (`condiff.sampling.make_sampler` kinds). `denoiser` says what
        the UNet's input and output mean (condiff.denoiser); without one, a plain UNet of the image and
        the conditions' channels."""
        super().__init__()
        if denoiser is None:
            denoiser = Denoiser(condition_channels=conditions.widths)
        if list(denoiser.config.condition_channels) != conditions.widths:
            raise CondiffError(f"the denoiser's condition channels {list(denoiser.config.condition_channels)} are "
                               f"not those of the conditions ({', '.join(conditions.names) or 'none'}: "
                               f"{conditions.widths})")
        problem = denoiser.unet_problem(unet.config)
        if problem:
            raise CondiffError(f"the UNet does not fit its denoiser: {problem}; for a folder saved by an earlier "
                               "condiff, run `condiff upgrade FOLDER` (condiff.load_pipeline reads it as it is)")
        self.register_modules(unet=unet, scheduler=scheduler, conditions=conditions, denoiser=denoiser)
        self.register_to_config(sampler=sampler, sampler_steps=sampler_steps)

    @property
    def resolution(self) -> int:
        return self.unet.config.sample_size

    def guidance_scales(self, guidance: float | Sequence[float]) -> list[float]:
        """One scale per condition: a single number applies to every condition."""
        count = len(self.conditions.encoders)
        scales = [guidance] * count if isinstance(guidance, int | float) else list(guidance)
        if len(scales) != count:
            raise CondiffError(f"--guidance: this model has {count} condition(s) ({', '.join(self.conditions.names)}) "
                               f"but {len(scales)} scales were given; give one, or one per condition")
        return [float(scale) for scale in check_guidance(scales)]

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
        **steering: str,
    ) -> ConditionalPipelineOutput | tuple:
        """Generate `num_images_per_input` images for each input image, grouped by input.

        A conditional model takes `images` (see `encode`) or precomputed `condition_channels`
        (N, C, H, W); an unconditional one takes neither and makes `batch_size` images. Noise comes from
        `generator` as in diffusers, or with `seed` image i uses a generator seeded with seed + i (what
        the commands' --seed does). Without `num_inference_steps` the saved training scheduler samples as
        the commands do (`sampler`, `sampler_steps` of the config); a scheduler you set is kept. `record=True`
        keeps every step in `.trajectory` (for denoising GIFs).

        `steering`: one mode per sampling-time steering option (condiff.steering.OPTIONS; "auto" when left
        out): `palette` "auto" uses the model's palette when it has one, "project" pulls the last steps toward
        it and snaps, "snap" only snaps the result, "off" ignores it; `silhouette` "auto" keeps the output's
        figure where the conditions fix one (sketch `fill`), "off" lets the model draw freely; `lightness`
        "auto" keeps the lightness a condition fixes (grayscale), "off" leaves the model's own.
        """
        if output_type not in OUTPUT_TYPES:  # before sampling, so a misspelt output type costs nothing
            raise CondiffError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")
        modes = check_modes(steering, OPTIONS)
        scheduler, steps = self._sampler(num_inference_steps)
        condition = self._condition(images, condition_channels)
        if condition is not None:
            condition = condition.repeat_interleave(num_images_per_input, dim=0)
        # The conditions' steps, then the model's (its palette), in the order they act.
        steps_of_call = self.conditions.steering(condition.to(self.device), modes) if condition is not None else []
        steps_of_call += self.denoiser.steering(modes)
        context = context_for(steps_of_call, steps)
        run = {"seed": seed, "generator": generator, "record": record, "progress": self.progress_bar,
               "steering": steps_of_call, "context": context}
        if condition is None:
            samples = generate(self.denoiser, self.unet, scheduler, batch_size, steps, **run)
        else:
            guided = partial(self.denoiser.guided_output, guidance=self.guidance_scales(guidance))
            samples = generate(self.denoiser, self.unet, scheduler, len(condition), steps, condition=condition,
                               network=guided, **run)
        samples.images = finished(steps_of_call, samples.images, context)
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


def check_guidance(guidance: float | Sequence[float]) -> float | Sequence[float]:
    """`guidance` (one scale, or one per condition), each scale checked against GUIDANCE_RANGE: the pipeline
    checks every call's, and the commands call this before any work."""
    for scale in [guidance] if isinstance(guidance, int | float) else guidance:
        if not GUIDANCE_RANGE.low <= scale <= GUIDANCE_RANGE.high:  # False for NaN too
            raise CondiffError(f"--guidance {scale}: give a number from {GUIDANCE_RANGE.low:g} to "
                               f"{GUIDANCE_RANGE.high:g} ({GUIDANCE_RANGE.why})")
    return guidance


def _as_pil_list(images: OneInput) -> list[Image.Image]:
    if isinstance(images, torch.Tensor):
        return to_pil_images(images)
    if isinstance(images, Image.Image):
        return [images]
    return list(images)


# DiffusionPipeline.from_pretrained finds the class model_index.json names among diffusers' attributes.
setattr(sys.modules["diffusers"], ConditionalDDPMPipeline.__name__, ConditionalDDPMPipeline)
