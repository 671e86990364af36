"""The app's models: which folder goes to which tab, loading once, and running them.

Each tab is one registered task of `condiff.tasks` that has an `app` tab: Generate is `unconditional`,
Colorize `colorize`, Sketch `sketch2img`, Any model `generate` (every conditional model, one input per
condition). A model appears in every tab whose task accepts it (a model trained on several conditions in
each of theirs), and runs through the same `Task.run` as the CLI commands.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condiff.errors import CondiffError, DataError
from condiff.images import open_image, pixel_limit
from condiff.tasks import ANY_CONDITION, UNCONDITIONAL, Task, list_tasks

# Upload limits: the command line's pixel limit (16 MP unless $CONDIFF_MAX_PIXELS says otherwise), read at start-up.
MAX_UPLOAD_PIXELS = pixel_limit()
MAX_FILE_SIZE = "20mb"


TABS = tuple(task for task in list_tasks() if task.app)  # the tasks with a tab, in their registration order


@dataclass
class AppModel:
    label: str
    path: Path
    pipeline: Any = field(repr=False)  # a ConditionalDDPMPipeline (no conditions for an unconditional model)
    train_scheduler: Any = field(repr=False)  # each run makes its sampler from this config

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(self.pipeline.conditions.names)


@dataclass
class Catalog:
    """Every model found, and a note per tab that has none."""

    models: list[AppModel]
    notes: dict[str, str]

    def for_tab(self, tab: Task) -> list[AppModel]:
        return [model for model in self.models if tab.accepts(model.conditions)]

    def by_label(self, label: str) -> AppModel:
        for model in self.models:
            if model.label == label:
                return model
        raise CondiffError(f"{label}: no such model in this app; pick one from the list")


def load_model(folder: str | Path, label: str, device: str) -> AppModel:
    """Load one model folder (errors are one-line `CondiffError`s naming the folder)."""
    from condiff.model_folder import load_pipeline

    pipeline = load_pipeline(folder).to(device)
    pipeline.set_progress_bar_config(disable=True)
    return AppModel(label, Path(folder), pipeline, pipeline.scheduler)


def find_models(extra: Sequence[str] = (), device: str = "cpu", shipped: bool = True) -> Catalog:
    """The shipped models that are installed (when `shipped`), then every folder in `extra`."""
    from condiff.tasks import installed_models

    installed = installed_models() if shipped else {}
    wanted = [(folder, f"{name} (shipped)") for name, folder in installed.items()]
    wanted += [(folder, str(folder)) for folder in extra]
    by_folder: dict[Path, tuple] = {}
    for folder, label in wanted:
        by_folder.setdefault(Path(folder).resolve(), (folder, label))  # a folder given twice is loaded once
    catalog = Catalog([load_model(folder, label, device) for folder, label in by_folder.values()], {})
    for tab in TABS:
        if not catalog.for_tab(tab):
            catalog.notes[tab.app.key] = missing_note(tab, shipped and tab.name not in installed)
    return catalog


def missing_note(task: Task, shipped_missing: bool) -> str:
    """What a tab without a model says: why, and how to get one. `shipped_missing`: the app looked for
    the shipped models and the task's one (if the task has one) is not installed."""
    if task.condition == ANY_CONDITION:
        what, recipe = "a conditional model (any conditions, plugins included)", "sketch2img"
        reason = "none of the models given is conditional"
    else:
        what = f"a model trained on the '{task.condition}' condition" if task.condition else "an unconditional model"
        recipe, reason = task.name, "none of the models given has it"
        if shipped_missing:
            reason = f"the shipped model ({task.description}) is not installed in this copy of condiff"
    return (f"No model for this tab: {reason}. This tab needs {what}; train one (`condiff train "
            f"recipes/{recipe}.yaml`) and start the app with `condiff app --model outputs/{recipe}`.")


# ---------------------------------------------------------------------------------------------------
# Running a model: `Task.run`, as the CLI commands do
# ---------------------------------------------------------------------------------------------------


MAX_IMAGES = 16  # images one Generate may ask for (its slider's maximum)


def request_numbers(steps, seed, num=1) -> tuple[int, int, int]:
    """(steps, seed, num) of a request as whole numbers in range. Checked on the server: a direct request
    can send anything (NaN, 1e300, -1) past the page's sliders. The sampler checks the steps' upper limit."""
    from condiff.config import SEED_MAX

    checked = []
    for name, value, low, high in (("steps", steps, 1, None), ("seed", seed or 0, 0, SEED_MAX),
                                   ("number of images", num, 1, MAX_IMAGES)):
        number = float(value) if isinstance(value, int | float) else math.nan
        if not math.isfinite(number) or number != int(number) or number < low or (high and number > high):
            limit = f"from {low} to {high}" if high else f"of at least {low}"
            raise CondiffError(f"{name} {str(value)[:30]}: give a whole number {limit}")
        checked.append(int(number))
    return checked[0], checked[1], checked[2]


def with_sampler(model: AppModel, kind: str, steps: int):
    from condiff.sampling import make_sampler

    model.pipeline.scheduler = make_sampler(model.train_scheduler, kind, steps)
    return model.pipeline


def generate_grid(model: AppModel, steps: int, seed: int, num: int, scheduler: str, scale: int = 4,
                  steering: dict[str, str] | None = None):
    """(grid image, denoising animation frames), as `condiff sample --gif` writes them; the numbers as a request
    sent them (see request_numbers); `steering`: {option: mode} as the command's steering options
    (condiff.steering), "auto" where left out."""
    from condiff.visualize import make_grid, trajectory_frames

    steps, seed, num = request_numbers(steps, seed, num)
    result = UNCONDITIONAL.run(with_sampler(model, scheduler, steps), num=num, steps=steps, seed=seed, record=True,
                               output_type="latent", **(steering or {}))
    return make_grid(result.images, scale=scale), trajectory_frames(result.trajectory, scale=scale)


def apply_condition(model: AppModel, tab: Task, image, steps: int, scheduler: str,
                    guidance: float | Sequence[float], seed: int, full_res: bool = False,
                    steering: dict[str, str] | None = None):
    """(output at the model's resolution, full-resolution output or None), as `condiff colorize` /
    `condiff sketch2img` / `condiff generate` write them. `image` is a PIL image of any size and mode,
    or {condition name: image} (the Any-model tab, which also gives one guidance scale per condition).
    `steering` as in generate_grid."""
    steps, seed, _ = request_numbers(steps, seed)
    pipeline = with_sampler(model, scheduler, steps)
    output = tab.run(pipeline, image, 1, steps, seed, guidance=guidance, **(steering or {})).images[0]
    return output, tab.full_resolution(image, output) if full_res else None


def open_upload(path: str | os.PathLike):
    """An uploaded image, checked like every input of the CLI; errors name the file, not the temp folder."""
    path = os.fspath(path)
    try:
        return open_image(path, max_pixels=MAX_UPLOAD_PIXELS)
    except DataError as err:
        raise DataError(str(err).replace(path, Path(path).name)) from None
