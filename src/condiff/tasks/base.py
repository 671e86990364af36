"""`Task`: what a model does for the user, the same in the CLI, the web app and `condiff eval` (see
`condiff.tasks`). Importing it loads neither torch nor numpy: `condiff --help` lists the tasks' commands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condiff.config import DEFAULT_PRECISION, PRECISIONS
from condiff.errors import CondiffError
from condiff.sampling import DEFAULT_SAMPLER_STEPS

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.features import NounsFeatureNet
    from condiff.evaluation.report import Report
    from condiff.pipeline import ConditionalDDPMPipeline, ConditionalPipelineOutput

# The models that ship inside the package (fp16 diffusers folders with a model card README.md), one per
# task, named after it, so a new user gets pictures without training first.
MODELS_ROOT = Path(__file__).parents[1] / "models"


ANY_CONDITION = "*"  # a task that takes any conditional model, whatever its conditions


@dataclass(frozen=True)
class AppTab:
    """What the web app (condiff.app) shows for a task: one tab, with one of the app's forms."""

    key: str  # the tab's id; the ids of its elements start with it
    title: str
    form: str  # "samples": a grid from nothing; "upload": an image file; "canvas": a drawing (the condition's
    # input is drawn, in the Any-model tab too); "conditions": any model, one input per condition
    button: str = "Generate"
    output: str = "Generated"  # what the output is called
    input_label: str = ""  # the upload's label, before the size limit ("upload" form)
    full_res_label: str = ""  # the checkbox for the output at the input's size too; "": no such option


@dataclass(frozen=True)
class Task:
    name: str  # also the shipped model's folder and the recipe that trains it (recipes/<name>.yaml)
    condition: str | None  # the condition its models must have; None: unconditional; ANY_CONDITION: any
    description: str  # what the shipped model is (its model card's first line)
    help: str  # the command's one-line help
    output_suffix: str = ""  # INPUT-<suffix>.png is the default output of an image-to-image command
    shipped: bool = True  # whether a model for it ships inside the package (and `condiff eval` measures it)
    full_res_help: str = " (nearest-neighbour enlarged)"  # what --full-res writes, after "at the input's size"
    app: AppTab | None = None  # its tab in the web app; None: no tab

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

    @property
    def takes_any_model(self) -> bool:
        """Whether it runs any conditional model, given one input per condition (or one for all)."""
        return self.condition == ANY_CONDITION

    def accepts(self, conditions: Sequence[str]) -> bool:
        """Whether a model trained on `conditions` can do this task."""
        if self.takes_any_model:
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

    def encoder(self, pipeline: ConditionalDDPMPipeline):
        """The encoder of this task's condition in the pipeline's condition stack."""
        stack = pipeline.conditions
        return stack.encoders[stack.names.index(self.condition)]

    def load(self, model: str | None, device: str, sampler: str, steps: int,
             precision: str = DEFAULT_PRECISION) -> ConditionalDDPMPipeline:
        """The model (the shipped one when `model` is None) on `device`, checked for this task, sampling
        with `sampler` in `steps` steps, its UNet computing in `precision` (condiff.config.PRECISIONS)."""
        from condiff.model_folder import load_pipeline
        from condiff.sampling import make_sampler

        if precision not in PRECISIONS:
            raise CondiffError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
        model = self.resolve_model(model)
        pipeline = load_pipeline(model)
        self.check(pipeline, model)
        pipeline.scheduler = make_sampler(pipeline.scheduler, sampler, steps)
        pipeline = pipeline.to(device)
        if precision == "bfloat16":  # nn.Module's own cast: diffusers' `to(dtype)` warns about loaded weights
            pipeline.unet.bfloat16()
        return pipeline

    # --- running --------------------------------------------------------------------------------

    def run(
        self,
        pipeline: ConditionalDDPMPipeline,
        inputs: Any = None,
        num: int = 1,
        steps: int = DEFAULT_SAMPLER_STEPS,
        seed: int = 0,
        record: bool = False,
        output_type: str = "pil",
        condition_channels: torch.Tensor | None = None,
        **options: Any,
    ) -> ConditionalPipelineOutput:
        """`num` outputs (for each input image of a conditional task).

        `inputs` is what the pipeline takes: PIL images or a tensor of images in [-1, 1]; or give the
        model's `condition_channels` directly (eval does). Image i uses seed + i. `options` are the
        pipeline call's other keywords, as the commands' `call_options` gives them: `guidance` and the
        sampling-time steering modes by option name (condiff.steering.OPTIONS), "auto" where left out."""
        count = {"num_images_per_input": num} if self.condition else {"batch_size": num}
        return pipeline(images=inputs, condition_channels=condition_channels, num_inference_steps=steps, seed=seed,
                        record=record, output_type=output_type, **count, **options)

    def full_resolution(self, source: Image.Image, output: Image.Image) -> Image.Image:
        """An output at the input's own size (nearest-neighbour enlarged)."""
        from PIL import Image

        from condiff.images import to_rgb

        return output.resize(to_rgb(source).size, Image.Resampling.NEAREST)

    # --- measuring ------------------------------------------------------------------------------

    def evaluate(self, model: str, settings: EvalSettings, net: NounsFeatureNet | None = None) -> Report:
        """This task's `condiff eval` report for `model`: the model's rows beside reference rows."""
        raise CondiffError(f"condiff eval has no measures for {self.name}")


# --- the registry: tasks by name, in registration order -------------------------------------------

_REGISTRY: dict[str, Task] = {}
TASKS: dict[str, Task] = {}  # those whose model ships: `condiff eval` measures them, `shipped:NAME` names them


def register_task(task: Task) -> Task:
    """Make `task` known under its name (to the commands, the app and eval); returns it."""
    known = _REGISTRY.get(task.name)
    if known is not None and known is not task:
        raise ValueError(f"task {task.name!r} is already registered by {type(known).__module__}; choose another name")
    _REGISTRY[task.name] = task
    if task.shipped:
        TASKS[task.name] = task
    return task


def task_for(conditions: Sequence[str]) -> Task | None:
    """The shipped task whose models have exactly these conditions (none: unconditional), or None."""
    for task in TASKS.values():
        if list(conditions) == ([task.condition] if task.condition else []):
            return task
    return None


def list_tasks() -> list[Task]:
    return list(_REGISTRY.values())


def installed_models() -> dict[str, Path]:
    """The shipped models present in this installation, by task name."""
    return {name: task.shipped_folder for name, task in TASKS.items() if task.is_installed}
