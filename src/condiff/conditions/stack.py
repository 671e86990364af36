"""The ordered set of condition encoders a model was trained with: a pipeline component.

`ConditionStack` records, in order, each encoder's name, dropout probability and resolved settings
(every argument, defaults included), so that a model saved today keeps reading its inputs the same way
when an encoder's defaults change later. It is a diffusers `ModelMixin` so that
`save_pretrained`/`from_pretrained` of a pipeline round-trip it; its only tensor is a buffer of channel
counts (a component without weights would write no file).
It is where condition channels leave an encoder, a plugin's included: every batch is checked there
(`checked_input`, `check_layout`, `check_values`), so a broken encoder is a one-line error naming it, never
a black image.
This module path is public API: it is recorded in saved `model_index.json` files.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import build_encoder, provider
from condiff.config import ConditionSpec
from condiff.errors import CondiffError

# Condition channels lie in [-1, 1] (condiff.conditions.base); far beyond, they are an encoder's bug (the UNet
# sees them beside unit-variance noise and samples a black image), not a choice of scale.
CHANNEL_LIMIT = 100.0


class ConditionStack(ModelMixin, ConfigMixin):
    config_name = "config.json"

    def __init__(self, conditions: list[dict[str, Any]] | tuple = ()) -> None:
        """`conditions`: flat specs, {"name": ..., "dropout": ..., **settings}, in channel order. Settings
        left out take the encoder's current defaults (as in a folder saved before settings were recorded)."""
        super().__init__()
        specs = [ConditionSpec.from_dict(values, f"conditions[{i}]") for i, values in enumerate(conditions)]
        self.encoders = [build_encoder(spec, f"conditions[{i}]") for i, spec in enumerate(specs)]
        self.dropouts = [spec.dropout for spec in specs]
        # Which consistency losses take the training images (a plugin written before they were offered does not):
        # read once here, not at every training step.
        self.takes_truth = ["truth" in inspect.signature(e.consistency).parameters for e in self.encoders]
        # Recorded by hand rather than by @register_to_config, which would record only what was given.
        resolved = [ConditionSpec(e.name, s.dropout, e.settings, provider(type(e)))
                    for e, s in zip(self.encoders, specs, strict=True)]
        self.register_to_config(conditions=[spec.to_dict() for spec in resolved])
        self.register_buffer("channel_counts", torch.tensor(self.widths or [0]))

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.encoders]

    @property
    def channels(self) -> int:
        """Condition channels added to the UNet input, all encoders together."""
        return sum(self.widths)

    @property
    def channel_slices(self) -> list[slice]:
        return slices_for(self.widths)

    @property
    def luma_channel(self) -> int | None:
        """Among all condition channels, the first that is each output's luma (an encoder's `luma_channel`)."""
        return next((part.start + e.luma_channel for e, part in zip(self.encoders, self.channel_slices, strict=True)
                     if e.luma_channel is not None), None)

    @property
    def widths(self) -> list[int]:
        """Each condition's channel count, in order."""
        return [e.num_channels for e in self.encoders]

    def steering(self, channels: torch.Tensor, modes: Mapping[str, str]) -> list:
        """The sampling-time steps (condiff.steering) that condition `channels` (N, C, H, W) give a call with
        steering `modes`: each encoder's, on its own channels, in order."""
        return [step for encoder, part in zip(self.encoders, self.channel_slices, strict=True)
                for step in encoder.steering(channels[:, part], modes)]

    @property
    def offers_consistency(self) -> bool:
        """Whether some encoder offers a consistency loss (overrides ConditionEncoder.consistency)."""
        return any(type(encoder).consistency is not ConditionEncoder.consistency for encoder in self.encoders)

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor,
                    truth: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) how far predicted clean images disobey their condition `channels`: the sum over the
        encoders that offer a consistency loss, each counted only for samples whose condition was not
        dropped (all-zero channels carry no condition). `truth`, the training images, goes to the encoders
        whose loss takes it (a plugin written before it was offered takes two arguments)."""
        total = predicted.new_zeros(predicted.shape[0])
        for encoder, part, takes_truth in zip(self.encoders, self.channel_slices, self.takes_truth, strict=True):
            given = channels[:, part]
            if truth is not None and takes_truth:
                losses = encoder.consistency(predicted, given, truth=truth)
            else:
                losses = encoder.consistency(predicted, given)
            if losses is not None:
                present = given.flatten(1).abs().amax(dim=1) > 0
                total = total + losses * present.to(losses)
        return total

    def encode_training(self, images: torch.Tensor, apply_dropout: bool = True) -> torch.Tensor:
        """Condition channels for a training batch, each condition dropped (zeroed) per sample with its
        probability, so the model also learns the unconditional case that guidance needs."""
        batch, _, height, width = images.shape
        parts = []
        for encoder in self.encoders:
            channels = encoder.encode_training(images)
            check_layout(encoder, channels, (batch, encoder.num_channels, height, width), "encode_training")
            parts.append(channels.to(images))
        check_values(self.encoders, parts, "encode_training")
        for index, dropout in enumerate(self.dropouts):
            if apply_dropout and dropout > 0:
                keep = (torch.rand(batch, device=images.device) >= dropout).to(images)
                parts[index] = parts[index] * keep[:, None, None, None]
        return torch.cat(parts, dim=1)

    def encode_inputs(self, images: Sequence[Image.Image] | Mapping[str, Sequence[Image.Image]],
                      resolution: int) -> torch.Tensor:
        """Condition channels for user images: one list of images that feeds every condition, or a
        mapping {condition name: its own list}, the lists of equal length (item i of each is input i)."""
        per_condition = self._inputs_per_condition(images)
        return torch.cat([
            torch.cat([checked_input(encoder, image, resolution) for image in inputs])
            for encoder, inputs in zip(self.encoders, per_condition, strict=True)
        ], dim=1)

    def _inputs_per_condition(self, images) -> list[Sequence[Image.Image]]:
        if not isinstance(images, Mapping):
            return [images] * len(self.encoders)
        names = self.names
        if len(set(names)) < len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise CondiffError(f"this model has the condition {twice!r} twice; inputs by name cannot "
                               "tell them apart: give one image for all conditions")
        unknown = [name for name in images if name not in names]
        missing = [name for name in names if name not in images]
        if unknown or missing:
            problem = f"no condition {unknown[0]!r}" if unknown else f"no input for {', '.join(missing)}"
            raise CondiffError(f"inputs: {problem}; this model's conditions are {', '.join(names)}: give one "
                               "input per condition, or one image for all")
        counts = {name: len(images[name]) for name in names}
        if len(set(counts.values())) > 1:
            given = ", ".join(f"{name} {count}" for name, count in counts.items())
            raise CondiffError(f"inputs: every condition needs the same number of images ({given})")
        return [images[name] for name in names]


def checked_input(encoder: ConditionEncoder, image: Image.Image, resolution: int) -> torch.Tensor:
    """`encoder.encode_input(image, resolution)`, checked (`check_layout`, `check_values`), as float32."""
    channels = encoder.encode_input(image, resolution)
    check_layout(encoder, channels, (1, encoder.num_channels, resolution, resolution), "encode_input")
    check_values([encoder], [channels], "encode_input")
    return channels.float()


def check_layout(encoder: ConditionEncoder, channels: Any, shape: tuple[int, int, int, int], call: str) -> None:
    """What `encoder.<call>` returned is a floating-point tensor of `shape` (batch, the channels the encoder
    declares, the images' height and width), or a one-line CondiffError naming the encoder. Reads no value."""
    if not isinstance(channels, torch.Tensor):
        problem = f"a {type(channels).__name__}, not a torch tensor"
    elif not torch.is_floating_point(channels):
        problem = f"a tensor of {channels.dtype}, not of floating point (e.g. torch.float32)"
    elif tuple(channels.shape) != shape:
        problem = f"shape {tuple(channels.shape)}, not {shape}: {_shape_problem(tuple(channels.shape), shape)}"
    else:
        return
    raise _encoder_error(encoder, call, problem)


def check_values(encoders: Sequence[ConditionEncoder], parts: Sequence[torch.Tensor], call: str) -> None:
    """Every encoder's channels are finite and at most CHANNEL_LIMIT in magnitude, or a one-line CondiffError
    naming the first that is not. One read of one number per encoder, in a single transfer."""
    peaks = [part.detach().abs().amax() if part.numel() else part.new_zeros(()) for part in parts]
    values = torch.stack([peak.to(parts[0].device, torch.float32) for peak in peaks]).tolist()
    for encoder, peak in zip(encoders, values, strict=True):
        if not math.isfinite(peak):
            raise _encoder_error(encoder, call, "NaN or infinite values")
        if peak > CHANNEL_LIMIT:
            raise _encoder_error(encoder, call, f"values as large as {peak:.3g} (beyond {CHANNEL_LIMIT:g})")


def _shape_problem(got: tuple[int, ...], want: tuple[int, int, int, int]) -> str:
    if len(got) != 4:
        return f"{len(got)} dimensions instead of 4 (batch, channels, height, width)"
    if got[0] != want[0]:
        return f"a batch of {got[0]} for {want[0]} image(s)"
    if got[1] != want[1]:
        return f"{got[1]} channel(s) where the encoder declares {want[1]} (num_channels)"
    return f"{got[2]}x{got[3]} pixels for images of {want[2]}x{want[3]}"


def _encoder_error(encoder: ConditionEncoder, call: str, problem: str) -> CondiffError:
    return CondiffError(f"condition {encoder.name!r} (package {provider(type(encoder))}): {call} returned {problem}; "
                        "condition channels must be finite floats in [-1, 1]: fix the encoder or report it to its "
                        "package")


def slices_for(widths: Sequence[int]) -> list[slice]:
    """Where each of consecutive channel groups `widths` wide lies: [2, 1] -> [slice(0, 2), slice(2, 3)]."""
    ends = itertools.accumulate(widths)
    return [slice(end - width, end) for width, end in zip(widths, ends, strict=True)]
