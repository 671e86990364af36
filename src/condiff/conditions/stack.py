"""The ordered set of condition encoders a model was trained with: a pipeline component.

`ConditionStack` records, in order, each encoder's name, dropout probability and resolved settings
(every argument, defaults included), so that a model saved today keeps reading its inputs the same way
when an encoder's defaults change later. It is a diffusers `ModelMixin` so that
`save_pretrained`/`from_pretrained` of a pipeline round-trip it; its only tensor is a buffer of channel
counts (a component without weights would write no file).
This module path is public API: it is recorded in saved `model_index.json` files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import provider
from condiff.config import ConditionSpec
from condiff.errors import CondiffError


class ConditionStack(ModelMixin, ConfigMixin):
    config_name = "config.json"

    def __init__(self, conditions: list[dict[str, Any]] | tuple = ()) -> None:
        """`conditions`: flat specs, {"name": ..., "dropout": ..., **settings}, in channel order. Settings
        left out take the encoder's current defaults (as in a folder saved before settings were recorded)."""
        super().__init__()
        specs = [ConditionSpec.from_dict(values, f"conditions[{i}]") for i, values in enumerate(conditions)]
        self.encoders = [spec.build_encoder(f"conditions[{i}]") for i, spec in enumerate(specs)]
        self.dropouts = [spec.dropout for spec in specs]
        # Recorded by hand rather than by @register_to_config, which would record only what was given.
        resolved = [ConditionSpec(e.name, s.dropout, e.settings, provider(type(e)))
                    for e, s in zip(self.encoders, specs, strict=True)]
        self.register_to_config(conditions=[spec.to_dict() for spec in resolved])
        self.register_buffer("channel_counts", torch.tensor([e.num_channels for e in self.encoders] or [0]))

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.encoders]

    @property
    def channels(self) -> int:
        """Condition channels added to the UNet input, all encoders together."""
        return sum(e.num_channels for e in self.encoders)

    @property
    def channel_slices(self) -> list[slice]:
        start, slices = 0, []
        for encoder in self.encoders:
            slices.append(slice(start, start + encoder.num_channels))
            start += encoder.num_channels
        return slices

    def known_luma(self, channels: torch.Tensor) -> torch.Tensor | None:
        """The output luma that condition `channels` (N, C, H, W) fix (the first encoder that fixes one),
        or None."""
        return self._first_known("known_luma", channels)

    def known_figure(self, channels: torch.Tensor) -> torch.Tensor | None:
        """The output's figure (N, 1, H, W) bool that condition `channels` fix (the first encoder that fixes
        one), or None."""
        return self._first_known("known_figure", channels)

    def _first_known(self, method: str, channels: torch.Tensor) -> torch.Tensor | None:
        """The first encoder's answer to `method` (known_luma, known_figure) on its own channels, or None."""
        for encoder, part in zip(self.encoders, self.channel_slices, strict=True):
            known = getattr(encoder, method)(channels[:, part])
            if known is not None:
                return known
        return None

    @property
    def offers_consistency(self) -> bool:
        """Whether some encoder offers a consistency loss (overrides ConditionEncoder.consistency)."""
        return any(type(encoder).consistency is not ConditionEncoder.consistency for encoder in self.encoders)

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """(N,) how far predicted clean images disobey their condition `channels`: the sum over the
        encoders that offer a consistency loss, each counted only for samples whose condition was not
        dropped (all-zero channels carry no condition)."""
        total = predicted.new_zeros(predicted.shape[0])
        for encoder, part in zip(self.encoders, self.channel_slices, strict=True):
            given = channels[:, part]
            losses = encoder.consistency(predicted, given)
            if losses is not None:
                present = given.flatten(1).abs().amax(dim=1) > 0
                total = total + losses * present.to(losses)
        return total

    def encode_training(self, images: torch.Tensor, apply_dropout: bool = True) -> torch.Tensor:
        """Condition channels for a training batch, each condition dropped (zeroed) per sample with its
        probability, so the model also learns the unconditional case that guidance needs."""
        parts = []
        for encoder, dropout in zip(self.encoders, self.dropouts, strict=True):
            channels = encoder.encode_training(images).to(images)
            if apply_dropout and dropout > 0:
                keep = (torch.rand(images.shape[0], device=images.device) >= dropout).to(images)
                channels = channels * keep[:, None, None, None]
            parts.append(channels)
        return torch.cat(parts, dim=1)

    def encode_inputs(self, images: Sequence[Image.Image] | Mapping[str, Sequence[Image.Image]],
                      resolution: int) -> torch.Tensor:
        """Condition channels for user images: one list of images that feeds every condition, or a
        mapping {condition name: its own list}, the lists of equal length (item i of each is input i)."""
        per_condition = self._inputs_per_condition(images)
        return torch.cat([
            torch.cat([encoder.encode_input(image, resolution) for image in inputs])
            for encoder, inputs in zip(self.encoders, per_condition, strict=True)
        ], dim=1)

    def _inputs_per_condition(self, images) -> list[Sequence[Image.Image]]:
        if not isinstance(images, Mapping):
            return [images] * len(self.encoders)
        names = self.names
        if len(set(names)) < len(names):
            raise CondiffError(f"this model has the condition {_repeated(names)!r} twice; inputs by name cannot "
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


def _repeated(names: list[str]) -> str:
    return next(name for name in names if names.count(name) > 1)
