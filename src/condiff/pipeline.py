"""`ConditionalDDPMPipeline`: a diffusers pipeline whose UNet also sees condition channels.

Components: `unet` (input = image + condition channels), `scheduler` (any of DDPM, DDIM, DPM-Solver++;
swap with `from_config`) and `conditions` (a `ConditionStack` recording which encoders, in which order,
with which settings). `save_pretrained`/`from_pretrained` round-trip all three. This module path is
public API: it is recorded in saved `model_index.json` files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DiffusionPipeline
from PIL import Image

from condiff.conditions.stack import ConditionStack
from condiff.errors import CondiffError
from condiff.sampling import Samples, generate


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

    @torch.no_grad()
    def __call__(
        self,
        images: Image.Image | Sequence[Image.Image],
        num_images_per_input: int = 1,
        num_inference_steps: int = 50,
        guidance: float | Sequence[float] = 1.0,
        seed: int = 0,
        record: bool = False,
    ) -> Samples:
        """Generate `num_images_per_input` images for each input image (PIL, any size and mode).

        Returns `Samples` with images in [-1, 1] (N, 3, H, W), grouped by input.
        """
        if isinstance(images, Image.Image):
            images = [images]
        condition = self.conditions.encode_inputs(list(images), self.resolution)
        condition = condition.repeat_interleave(num_images_per_input, dim=0)
        return generate(self.unet, self.scheduler, len(condition), num_inference_steps, seed=seed,
                        condition=condition, record=record, guidance=self.guidance_scales(guidance),
                        condition_slices=self.conditions.channel_slices)
