"""Tasks: what `unconditional`, `colorize` and `sketch2img` mean, in one place.

A task is the condition its models must have been trained on, the model that ships for it, how an
input becomes an output, and how it is evaluated. The CLI (`condiff sample|colorize|sketch2img|eval`),
the web app and `scripts/ship_model.py` all use these objects, so a task behaves the same everywhere.

Colorization keeps the input's own lightness and takes only colour from the model: at the model's
resolution each output pixel is shifted equally in R, G and B until its luma is the gray the model
was given (`keep_luma`); at full resolution the output's colour (Lab a, b) is combined with the
lightness (L) of the input itself, so every edge and detail is exactly the input's. With a palette,
each pixel takes the palette colour of the input's lightness nearest to the model's colour; where no
palette colour has that lightness (a photograph, not a gray Noun), the input's lightness wins: the
pixel keeps the model's colour at that lightness and leaves the palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from condiff.errors import CondiffError
from condiff.images import to_rgb
from condiff.sampling import DEFAULT_SAMPLER_STEPS

if TYPE_CHECKING:
    import torch

    from condiff.pipeline import ConditionalDDPMPipeline, ConditionalPipelineOutput

# The models that ship inside the package (fp16 diffusers folders with a model card README.md), one per
# task, named after it, so a new user gets pictures without training first.
MODELS_ROOT = Path(__file__).parent / "models"


ANY_CONDITION = "*"  # a task that takes any conditional model, whatever its conditions


@dataclass(frozen=True)
class Task:
    name: str  # also the shipped model's folder and the recipe that trains it (recipes/<name>.yaml)
    condition: str | None  # the condition its models must have; None: unconditional; ANY_CONDITION: any
    description: str  # what the shipped model is (its model card's first line)
    help: str  # the command's one-line help
    output_suffix: str = ""  # INPUT-<suffix>.png is the default output of an image-to-image command
    shipped: bool = True  # whether a model for it ships inside the package

    # --- the shipped model ----------------------------------------------------------------------

    @property
    def shipped_folder(self) -> Path:
        return MODELS_ROOT / self.name

    @property
    def is_installed(self) -> bool:
        return (self.shipped_folder / "model_index.json").is_file()

    def resolve_model(self, model: str | None) -> str:
        """`--model` as given, or the shipped model when it was omitted."""
        if model:
            return model
        if not self.shipped:
            raise CondiffError(f"condiff {self.name} needs --model DIR: a folder written by condiff train")
        if not self.is_installed:
            raise CondiffError(f"the shipped {self.name} model is missing from {self.shipped_folder}; reinstall "
                               f"condiff, or train one (condiff train recipes/{self.name}.yaml) and pass "
                               f"--model outputs/{self.name}")
        return str(self.shipped_folder)

    # --- which models fit -----------------------------------------------------------------------

    def accepts(self, conditions: Sequence[str]) -> bool:
        """Whether a model trained on `conditions` can do this task."""
        if self.condition == ANY_CONDITION:
            return bool(conditions)
        return self.condition in conditions if self.condition else not conditions

    def check(self, pipeline: ConditionalDDPMPipeline, model: str | Path) -> None:
        names = pipeline.conditions.names
        if self.accepts(names):
            return
        if not self.condition:
            raise CondiffError(f"{model}: this model needs an input image; use condiff generate (or colorize, "
                               "sketch2img for their conditions)")
        if not names:
            raise CondiffError(f"{model}: an unconditional model; it takes no input image (use condiff sample)")
        raise CondiffError(f"{model}: this model was trained on conditions [{', '.join(names)}]; "
                           f"{self.name} needs {self.condition}; condiff generate takes any conditional model")

    def load(self, model: str | None, device: str, sampler: str, steps: int) -> ConditionalDDPMPipeline:
        """The model (the shipped one when `model` is None) on `device`, checked for this task, sampling
        with `sampler` in `steps` steps."""
        from condiff.model_folder import load_pipeline
        from condiff.sampling import make_sampler

        model = self.resolve_model(model)
        pipeline = load_pipeline(model)
        self.check(pipeline, model)
        pipeline.scheduler = make_sampler(pipeline.scheduler, sampler, steps)
        return pipeline.to(device)

    # --- running --------------------------------------------------------------------------------

    def run(
        self,
        pipeline: ConditionalDDPMPipeline,
        inputs: Any = None,
        num: int = 1,
        steps: int = DEFAULT_SAMPLER_STEPS,
        guidance: float | Sequence[float] = 1.0,
        seed: int = 0,
        record: bool = False,
        output_type: str = "pil",
        condition_channels: torch.Tensor | None = None,
        palette: str = "auto",
        silhouette: str = "auto",
    ) -> ConditionalPipelineOutput:
        """`num` outputs (for each input image of a conditional task), as this task writes them.

        `inputs` is what the pipeline takes: PIL images or a tensor of images in [-1, 1]; or give the
        model's `condition_channels` directly (eval does). Image i uses seed + i. `palette` is the
        pipeline's (auto, off, snap, project); so is `silhouette` (auto, off)."""
        from condiff.pipeline import check_output_type, postprocess

        check_output_type(output_type)
        palette_mode = pipeline.palette_mode(palette)
        if self.condition and condition_channels is None:
            condition_channels = pipeline.encode(inputs)
        count = {"num_images_per_input": num} if self.condition else {"batch_size": num}
        output = pipeline(condition_channels=condition_channels, num_inference_steps=steps, guidance=guidance,
                          seed=seed, record=record, output_type="latent", palette=palette_mode,
                          silhouette=silhouette, **count)
        if condition_channels is not None:
            seen = condition_channels.repeat_interleave(num, dim=0)
            output.images = self.finish(pipeline, output.images, seen, palette_mode)
        if output.trajectory is not None:
            output.trajectory.images = output.images  # the animation ends on what is written
        output.images = postprocess(output.images, output_type)
        return output

    def finish(self, pipeline: ConditionalDDPMPipeline, images: torch.Tensor, condition: torch.Tensor,
               palette_mode: str = "off") -> torch.Tensor:
        """The task's last touch on the model's samples in [-1, 1], given the channels the model saw
        and the palette mode the samples were made with."""
        return images

    def full_resolution(self, source: Image.Image, output: Image.Image) -> Image.Image:
        """An output at the input's own size (nearest-neighbour enlarged)."""
        return output.resize(to_rgb(source).size, Image.Resampling.NEAREST)

    # --- measuring ------------------------------------------------------------------------------

    def evaluate(self, model: str, settings, net=None):
        """This task's `condiff eval` report for `model` (see condiff.evaluation.evaluators)."""
        from condiff.evaluation.evaluators import EVALUATORS

        return EVALUATORS[self.name](self, model, settings, net)


class ColorizeTask(Task):
    """Colorization keeps the input's lightness exactly (see the module's docstring)."""

    def finish(self, pipeline: ConditionalDDPMPipeline, images: torch.Tensor, condition: torch.Tensor,
               palette_mode: str = "off") -> torch.Tensor:
        gray = pipeline.conditions.known_luma(condition)  # the luma the sampler's palette snap kept too
        return keep_luma(images, gray, snapped=palette_mode != "off")

    def full_resolution(self, source: Image.Image, output: Image.Image) -> Image.Image:
        """The input's own lightness with the model's colour, in Lab."""
        return recombine_luminance(source, output)


def keep_luma(images: torch.Tensor, gray: torch.Tensor, snapped: bool = False) -> torch.Tensor:
    """(N, 3, H, W) images and (N, 1, H, W) grayscale, both in [-1, 1] -> the images with the gray's
    luma. Luma weights sum to 1, so adding one value to R, G and B moves luma by exactly that value.

    `snapped`: the pipeline snapped the images to the palette with only colours of the gray's level
    competing (condiff.palette.nearest_colors). A pixel that got such a colour keeps it exactly; where
    the palette has no colour of that lightness, the pixel takes the gray's luma and leaves the palette."""
    import torch

    from condiff.conditions.base import luma
    from condiff.palette import on_gray_level

    gray = gray.to(images)
    lightened = (images + (gray - luma(images))).clamp(-1, 1)
    if not snapped:
        return lightened
    return torch.where(on_gray_level(images, gray), images, lightened)


def recombine_luminance(source: Image.Image, colour: Image.Image) -> Image.Image:
    """`source`'s lightness at its own size with `colour`'s chroma (bicubic-enlarged), via Lab."""
    from skimage.color import lab2rgb, rgb2lab

    source_rgb = np.asarray(to_rgb(source), dtype=np.float64) / 255.0
    height, width = source_rgb.shape[:2]
    colour_big = np.asarray(to_rgb(colour).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    lab = rgb2lab(colour_big)
    lab[..., 0] = rgb2lab(source_rgb)[..., 0]
    rgb = np.clip(lab2rgb(lab), 0.0, 1.0)
    return Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8))


UNCONDITIONAL = Task("unconditional", None, "Nouns, unconditional (condiff sample)", "generate images")
COLORIZE = ColorizeTask("colorize", "grayscale", "Nouns colorization, grayscale condition (condiff colorize)",
                        "colour a grayscale image", "colorized")
SKETCH2IMG = Task("sketch2img", "sketch", "Nouns sketch-to-image, sketch condition (condiff sketch2img)",
                  "turn a line drawing into an image", "generated")
# The tasks with a shipped model and an evaluation.
TASKS: dict[str, Task] = {task.name: task for task in (UNCONDITIONAL, COLORIZE, SKETCH2IMG)}
# Any conditional model, built-in conditions or plugins, each condition given its own input or one for all.
GENERATE = Task("generate", ANY_CONDITION, "any conditional model (condiff generate)",
                "generate images from input images with any conditional model", "generated", shipped=False)


def installed_models() -> dict[str, Path]:
    """The shipped models present in this installation, by task name."""
    return {name: task.shipped_folder for name, task in TASKS.items() if task.is_installed}
