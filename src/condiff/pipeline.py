"""`ConditionalDDPMPipeline`: a diffusers pipeline whose UNet also sees condition channels.

Components: `unet` (input = image + condition channels), `scheduler` (any of DDPM, DDIM, DPM-Solver++;
swap with `condiff.sampling.make_sampler` or diffusers' `from_config`) and `conditions` (a
`ConditionStack` recording which encoders, in which order, with which settings). An unconditional model
is the same pipeline with an empty stack, so every command samples through this one entry point.
`save_pretrained`/`from_pretrained` round-trip all three. This module path is public API: it is
recorded in saved `model_index.json` files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from condiff.conditions.stack import ConditionStack
from condiff.errors import CondiffError
from condiff.images import to_pil_images
from condiff.sampling import Samples, generate

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


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
    if output_type == "pt":
        return unit
    if output_type == "np":
        return unit.permute(0, 2, 3, 1).numpy()
    raise CondiffError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")


class ConditionalDDPMPipeline(DiffusionPipeline):
    def __init__(self, unet, scheduler, conditions: ConditionStack) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, conditions=conditions)

    @property
    def resolution(self) -> int:
        return self.unet.config.sample_size

    def guidance_scales(self, guidance: float | Sequence[float]) -> list[float]:
        """One scale per condition: a single number applies to every condition."""
        count = len(self.conditions.encoders)
        if isinstance(guidance, int | float):
            return [float(guidance)] * count
        scales = [float(g) for g in guidance]
        if len(scales) != count:
            raise CondiffError(f"--guidance: this model has {count} condition(s) ({', '.join(self.conditions.names)}) "
                               f"but {len(scales)} scales were given; give one, or one per condition")
        return scales

    def encode(self, images: Image.Image | Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """The condition channels for input images: PIL images of any size and mode, or a tensor of RGB
        images in [-1, 1] (N, 3, H, W), which is read exactly as the same images saved as PNG would be."""
        if isinstance(images, torch.Tensor):
            images = to_pil_images(images)
        elif isinstance(images, Image.Image):
            images = [images]
        return self.conditions.encode_inputs(list(images), self.resolution)

    @torch.no_grad()
    def __call__(
        self,
        images: Image.Image | Sequence[Image.Image] | torch.Tensor | None = None,
        num_images_per_input: int = 1,
        num_inference_steps: int = 50,
        guidance: float | Sequence[float] = 1.0,
        seed: int = 0,
        batch_size: int = 1,
        condition_channels: torch.Tensor | None = None,
        output_type: str = "pil",
        record: bool = False,
        return_dict: bool = True,
    ) -> ConditionalPipelineOutput | tuple:
        """Generate `num_images_per_input` images for each input image, grouped by input.

        A conditional model takes `images` (see `encode`) or precomputed `condition_channels`
        (N, C, H, W); an unconditional one takes neither and makes `batch_size` images. Image i uses
        seed + i. `record=True` keeps every step in `.trajectory` (for denoising GIFs).
        """
        if output_type not in OUTPUT_TYPES:
            raise CondiffError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")
        condition = self._condition(images, condition_channels)
        if condition is None:
            samples = generate(self.unet, self.scheduler, batch_size, num_inference_steps, seed=seed, record=record)
        else:
            condition = condition.repeat_interleave(num_images_per_input, dim=0)
            samples = generate(self.unet, self.scheduler, len(condition), num_inference_steps, seed=seed,
                               condition=condition, record=record, guidance=self.guidance_scales(guidance),
                               condition_slices=self.conditions.channel_slices)
        output = postprocess(samples.images, output_type)
        if not return_dict:
            return (output,)
        return ConditionalPipelineOutput(images=output, trajectory=samples if record else None)

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
