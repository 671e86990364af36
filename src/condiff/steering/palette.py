"""Palette steering: outputs on the colours of the training data (condiff.palette finds them), in the modes
of `OPTION`. Where a step fixes the lightness (colorize), only colours of that gray level compete. Cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.errors import CondiffError
from condiff.steering.base import SteeringContext, SteeringOption, Step

if TYPE_CHECKING:
    import torch

OPTION = SteeringOption("palette", ("auto", "off", "snap", "project"),
                        "the model's palette: auto (snap when the model has one), off (the model's own colours), "
                        "snap (every pixel onto the palette), project (pull the last steps toward it, then snap)",
                        given_by="model")
PALETTE_MODES = OPTION.modes
# Chosen by benchmarks/bench_palette.py (docs/benchmarks.md, "Palette-aware sampling"): snapping the
# finished image gave the lowest FD on every shipped model; pulling the last steps toward it did not.
DEFAULT_PALETTE_MODE = "snap"
PROJECT_FRACTION = 0.15  # the share of the sampler's steps, at the end, pulled toward the palette (the best tried)


def palette_steps(mode: str, palette: torch.Tensor | None, frequencies: torch.Tensor | None) -> list[Step]:
    """The steps of a call's palette `mode` (checked by `check_modes`) for a model with `palette` (P, 3) in
    [-1, 1] (or None) and each colour's share of the data (`frequencies`, (P,) or None)."""
    if mode == "auto":
        mode = DEFAULT_PALETTE_MODE if palette is not None else "off"
    elif mode != "off" and palette is None:
        raise CondiffError(f"palette {mode}: this model has no palette (its data had too many colours, or "
                           "data.palette was off); use --palette off")
    return [] if mode == "off" else [PaletteSteps(palette, frequencies, project=mode == "project")]


class PaletteSteps(Step):
    """Snaps the finished samples onto the palette; with `project`, first pulls the predicted clean image
    toward it over the last steps, harder each step (strength k/K at the k-th of K such steps)."""

    def __init__(self, palette: torch.Tensor, frequencies: torch.Tensor | None = None, project: bool = False,
                 fraction: float | None = None) -> None:
        """`fraction`: of the steps pulled toward the palette (`project`), default PROJECT_FRACTION."""
        self.palette, self.frequencies, self.project = palette, frequencies, project
        self.fraction = PROJECT_FRACTION if fraction is None else fraction

    def on_prediction(self, x0: torch.Tensor, index: int, context: SteeringContext) -> torch.Tensor | None:
        from condiff.palette import nearest_colors

        if not self.project:
            return None
        count = max(1, round(self.fraction * context.steps))
        position = index - (context.steps - count) + 1  # 1 .. count over the last steps
        if position <= 0:
            return None
        target = nearest_colors(x0, self.palette, context.lightness, frequencies=self.frequencies)
        return x0 + (position / count) * (target - x0)

    def on_output(self, images: torch.Tensor, context: SteeringContext) -> torch.Tensor:
        from condiff.palette import snap_to_palette

        context.palette = self.palette  # snap_to_palette moves the palette and the lightness to the images
        return snap_to_palette(images, self.palette, context.lightness, frequencies=self.frequencies)
