"""The ordered set of condition encoders a model was trained with: a pipeline component.

`ConditionStack` records, in order, each encoder's name, settings and dropout probability. It is a
diffusers `ModelMixin` so that `save_pretrained`/`from_pretrained` of a pipeline round-trip it; its
only tensor is a buffer of channel counts (a component without weights would write no file).
This module path is public API: it is recorded in saved `model_index.json` files.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import get_condition
from condiff.errors import CondiffError

STACK_KEYS = ("name", "dropout")  # per-condition keys that are not encoder settings


def build_encoder(spec: dict[str, Any], where: str = "conditions") -> ConditionEncoder:
    """An encoder from {"name": ..., **settings}; unknown settings are errors that name the key."""
    cls = get_condition(spec["name"])
    settings = {k: v for k, v in spec.items() if k not in STACK_KEYS}
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (settings of {spec['name']}: {', '.join(known)})"
            raise CondiffError(f"{where}: unknown setting '{key}' for condition {spec['name']!r}{hint}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as err:
        raise CondiffError(f"{where}: bad settings for condition {spec['name']!r}: {err}") from None


class ConditionStack(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, conditions: list[dict[str, Any]] | tuple = ()) -> None:
        super().__init__()
        self.encoders = [build_encoder(spec, f"conditions[{i}]") for i, spec in enumerate(conditions)]
        self.dropouts = [float(spec.get("dropout", 0.0)) for spec in conditions]
        self.register_buffer("channel_counts", torch.tensor([e.num_channels for e in self.encoders] or [0]))

    @classmethod
    def from_encoders(cls, encoders: list[ConditionEncoder], dropouts: list[float] | None = None) -> ConditionStack:
        dropouts = dropouts or [0.0] * len(encoders)
        return cls(conditions=[{**e.to_dict(), "dropout": d} for e, d in zip(encoders, dropouts, strict=True)])

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

    def encode_inputs(self, images: list[Image.Image], resolution: int) -> torch.Tensor:
        """Condition channels for user images; each image feeds every condition of the model."""
        return torch.cat([
            torch.cat([encoder.encode_input(image, resolution) for encoder in self.encoders], dim=1)
            for image in images
        ])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_training(images)
