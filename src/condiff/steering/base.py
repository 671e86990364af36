"""Sampling-time steering: steps that the conditions and the model's palette hand the pipeline, which
applies them in order and names none. A step may change each sampler step's predicted clean image
(`on_prediction`: the sampler then gets the output that implies it), the finished samples (`on_output`),
and then what every `on_output` left (`finish`). Steps share what one fixes and another must respect
through a `SteeringContext` (a fixed lightness, the palette a snap used)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from condiff.errors import CondiffError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SteeringOption:
    """How a call switches a kind of step: `pipeline(..., name=mode)` and the commands' `--name MODE`."""

    name: str  # a keyword of the pipeline's call; the commands' option is --name with - for _
    modes: tuple[str, ...]  # the first is the default
    help: str
    given_by: str = "conditions"  # "model": its steps come from the model itself (every model takes it)

    @property
    def default(self) -> str:
        return self.modes[0]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Step:
    """One sampling-time step (see the module's docstring)."""

    lightness: torch.Tensor | None = None  # (N, 1, H, W) in [-1, 1]: the output's lightness, when this step fixes it

    def on_prediction(self, x0: torch.Tensor, index: int, context: SteeringContext) -> torch.Tensor | None:
        """The predicted clean image (N, 3, H, W) of sampler step `index` as this step wants it, or None
        (unchanged)."""
        return None

    def on_output(self, images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
        return images

    def finish(self, images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
        return images


@dataclass
class SteeringContext:
    """What the steps of one call share: their number of sampler steps, the lightness a step fixes, the
    samples as the sampler left them, and the palette a step snapped them to."""

    steps: int
    lightness: torch.Tensor | None = None
    sampled: torch.Tensor | None = None
    palette: torch.Tensor | None = None


def context_for(steps: list[Step], sampler_steps: int) -> SteeringContext:
    """The context of one call's `steps`: the first lightness a step fixes."""
    lightness = next((step.lightness for step in steps if step.lightness is not None), None)
    return SteeringContext(sampler_steps, lightness)


def finished(steps: list[Step], images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
    """The finished samples after every step's `on_output`, then every step's `finish`, in order."""
    context.sampled = images
    for step in steps:
        images = step.on_output(images, context)
    for step in steps:
        images = step.finish(images, context)
    return images


def check_modes(options: dict[str, str], known: tuple[SteeringOption, ...]) -> dict[str, str]:
    """Every steering option of a call, checked (a misspelt one costs nothing), with the defaults filled in."""
    by_name = {option.name: option for option in known}
    for name, mode in options.items():
        if name not in by_name:
            raise CondiffError(f"unknown steering option {name!r}; the options are {', '.join(by_name)}")
        if mode not in by_name[name].modes:
            raise CondiffError(f"{name} {mode!r}: choose one of {', '.join(by_name[name].modes)}")
    return {name: options.get(name, option.default) for name, option in by_name.items()}
