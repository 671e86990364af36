"""The app's models: which folder goes to which tab, loading once, and running them.

Each tab needs one kind of model: Generate an unconditional one, Colorize one trained on the
`grayscale` condition, Sketch one trained on `sketch` (the conditions of `condiff colorize` and
`condiff sketch2img`). A conditional model trained on several conditions appears in every tab whose
condition it has, as `condiff colorize` would accept it too. Running a model goes through the same
library functions as `condiff sample` and `condiff colorize`/`sketch2img`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condiff.cli.conditional import TASKS, Task, full_resolution, sample_task
from condiff.errors import CondiffError, DataError

# Upload limits. Colorize --full-res works in float64 Lab at the input's size: 16 MP needs about 2 GB.
MAX_UPLOAD_PIXELS = 16_000_000
MAX_FILE_SIZE = "20mb"


@dataclass(frozen=True)
class Tab:
    key: str
    title: str
    task: Task | None  # None: unconditional generation
    shipped: str  # the shipped model used when no --model is given


_TASKS = {task.command: task for task in TASKS}
TABS = (
    Tab("generate", "Generate", None, "unconditional"),
    Tab("colorize", "Colorize", _TASKS["colorize"], "colorize"),
    Tab("sketch", "Sketch", _TASKS["sketch2img"], "sketch2img"),
)


@dataclass
class AppModel:
    label: str
    path: Path
    conditions: tuple[str, ...]  # () for an unconditional model
    unet: Any = field(repr=False)
    train_scheduler: Any = field(repr=False)  # samplers are made from its config
    pipeline: Any = field(default=None, repr=False)  # a ConditionalDDPMPipeline for a conditional model

    def fits(self, tab: Tab) -> bool:
        return tab.task.condition in self.conditions if tab.task else not self.conditions


@dataclass
class Catalog:
    """Every model found, and a note per tab that has none."""

    models: list[AppModel]
    notes: dict[str, str]

    def for_tab(self, tab: Tab) -> list[AppModel]:
        return [model for model in self.models if model.fits(tab)]

    def by_label(self, label: str) -> AppModel:
        for model in self.models:
            if model.label == label:
                return model
        raise CondiffError(f"{label}: no such model in this app; pick one from the list")


def load_model(folder: str | Path, label: str, device: str) -> AppModel:
    """Load one model folder (errors are one-line `CondiffError`s naming the folder)."""
    from condiff.model import load_conditional_pipeline, load_scheduler, load_unet, model_kind

    folder = Path(folder)
    if not folder.is_dir():
        raise CondiffError(f"--model {folder}: no such model folder; give a folder written by `condiff train`")
    if model_kind(folder) == "conditional":
        pipeline = load_conditional_pipeline(str(folder)).to(device)
        return AppModel(label, folder, tuple(pipeline.conditions.names), pipeline.unet, pipeline.scheduler, pipeline)
    unet = load_unet(str(folder)).to(device).eval()
    return AppModel(label, folder, (), unet, load_scheduler(str(folder)))


def find_models(extra: Sequence[str] = (), device: str = "cpu", shipped: bool = True) -> Catalog:
    """The shipped models that are installed (when `shipped`), then every folder in `extra`."""
    from condiff.pretrained import SHIPPED, available_models

    models: list[AppModel] = []
    seen: set[Path] = set()
    installed = available_models() if shipped else {}
    for name, folder in installed.items():
        models.append(load_model(folder, f"{name} (shipped)", device))
        seen.add(folder.resolve())
    for folder in extra:
        if Path(folder).resolve() not in seen:
            models.append(load_model(folder, str(folder), device))
            seen.add(Path(folder).resolve())
    catalog = Catalog(models, {})
    for tab in TABS:
        if catalog.for_tab(tab):
            continue
        what = f"a model trained on the '{tab.task.condition}' condition" if tab.task else "an unconditional model"
        if shipped and tab.shipped not in installed:
            reason = f"the shipped model ({SHIPPED[tab.shipped]}) is not installed in this copy of condiff"
        else:
            reason = "none of the models given has it"
        catalog.notes[tab.key] = (f"No model for this tab: {reason}. This tab needs {what}; train one "
                                  f"(`condiff train recipes/{tab.shipped}.yaml`) and start the app with "
                                  f"`condiff app --model outputs/{tab.shipped}`.")
    return catalog


# ---------------------------------------------------------------------------------------------------
# Running a model: the library calls of `condiff sample` and `condiff colorize`/`sketch2img`
# ---------------------------------------------------------------------------------------------------


def sampler_for(train_scheduler, kind: str, steps: int):
    from condiff.sampling import make_sampler

    return make_sampler(train_scheduler, kind, steps)


def generate_grid(model: AppModel, num: int, steps: int, scheduler: str, seed: int, scale: int = 4):
    """(grid image, denoising animation frames), as `condiff sample --gif` writes them."""
    from condiff.sampling import generate
    from condiff.visualize import make_grid

    sampler = sampler_for(model.train_scheduler, scheduler, steps)
    samples = generate(model.unet, sampler, num, steps, seed=seed, record=True)
    return make_grid(samples.images, scale=scale), samples.animation_frames(scale=scale)


def apply_condition(model: AppModel, tab: Tab, image, steps: int, scheduler: str, guidance: float,
                    seed: int, full_res: bool = False):
    """(output at the model's resolution, full-resolution output or None), as `condiff colorize` /
    `condiff sketch2img` write them. `image` is a PIL image of any size and mode."""
    from PIL import Image

    from condiff.images import to_uint8

    pipeline = model.pipeline
    pipeline.scheduler = sampler_for(model.train_scheduler, scheduler, steps)
    samples = sample_task(tab.task, pipeline, image, 1, steps, pipeline.guidance_scales(guidance), seed)
    output = Image.fromarray(to_uint8(samples.images)[0])
    return output, full_resolution(tab.task, image, output) if full_res else None


def open_upload(path: str | os.PathLike, max_pixels: int = MAX_UPLOAD_PIXELS):
    """An uploaded image, checked like every input of the CLI; errors name the file, not the temp folder."""
    from condiff.images import open_image

    path = os.fspath(path)
    try:
        return open_image(path, max_pixels=max_pixels)
    except DataError as err:
        raise DataError(str(err).replace(path, Path(path).name)) from None
