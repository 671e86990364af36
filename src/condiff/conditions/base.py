"""The condition-encoder interface: a name, a channel count, and a function from images to channels.

An encoder turns a batch of clean training images into condition channels (`encode_training`, which
may be random, e.g. sketch jitter) and a user's image into the same channels (`encode_input`, which
normalises whatever the user brings). Channels are float in [-1, 1] and are concatenated to the noisy
image at the UNet input; `ConditionStack` checks every batch an encoder returns (floating point, finite, the
declared shape) and names the encoder in a one-line error otherwise. All-zero channels mean "no condition"
(condition dropout and classifier-free guidance use them), so an encoder should not rely on an all-zero
output carrying information.

Settings are recorded with diffusers' `register_to_config`, so a saved model knows exactly which
encoders, with which parameters, it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin
from PIL import Image

from condiff.config import RESIZE_FILTERS
from condiff.data.preprocess import prepare_image
from condiff.images import to_model_tensor


def check_resize(resize: str) -> None:
    if resize not in RESIZE_FILTERS:
        raise ValueError(f"unknown resize filter {resize!r}; choose one of {', '.join(RESIZE_FILTERS)}")


def prepare_input(image: Image.Image, resolution: int, resize: str) -> torch.Tensor:
    """A user's image -> (1, 3, res, res) in [-1, 1]: RGB, shorter side scaled, centre cut out."""
    return to_model_tensor(prepare_image(image, resolution, resize=resize, center_crop=True)[None])


class ConditionEncoder(ConfigMixin):
    config_name = "condition_config.json"
    name: ClassVar[str] = ""  # set by @register_condition
    channels: ClassVar[int] = 0  # an encoder whose count depends on its settings overrides `num_channels`
    drawn: ClassVar[bool] = False  # whether a user draws its input (the web app gives it a canvas, not an upload)
    # The channel that is each output's luma in [-1, 1], when this condition fixes it (grayscale): a model may
    # then diffuse only the chroma (model.diffuse: chroma, condiff.denoiser).
    luma_channel: ClassVar[int | None] = None

    @property
    def num_channels(self) -> int:
        return self.channels

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) clean images in [-1, 1] -> (N, num_channels, H, W) in [-1, 1].

        Randomness (augmentations) must come from torch's global RNG, which checkpoints restore.
        """
        raise NotImplementedError

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        """A user's image (any size and mode, EXIF already applied) -> (1, num_channels, res, res)."""
        raise NotImplementedError

    def steering(self, channels: torch.Tensor, modes: Mapping[str, str]) -> list:
        """The sampling-time steps (condiff.steering.base.Step) that these channels (N, num_channels, H, W)
        give a call with steering `modes` ({option name: mode}): grayscale keeps its lightness, a sketch with
        `fill` its silhouette. None by default."""
        return []

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor,
                    truth: torch.Tensor | None = None) -> torch.Tensor | None:
        """How far predicted clean images (N, 3, H, W) in [-1, 1] disobey these condition channels: (N,)
        losses, 0 where the prediction agrees, differentiable in `predicted`. The trainer adds it at
        low-noise timesteps when train.consistency_weight > 0 (the ControlNet++ idea, arxiv 2404.07987),
        and hands in `truth`, the training images the channels were made from, so that an encoder may leave
        out what the truth itself disobeys (an override may also leave the argument out). None by default:
        the encoder offers no such loss."""
        return None

    def panels(self, channels: torch.Tensor) -> list[torch.Tensor]:
        """How `condiff encode` shows this encoder's channels (C, H, W) in [-1, 1]: panels side by side,
        each (1, H, W) gray or (3, H, W) colour in [-1, 1]. By default 3 channels are one colour panel and
        any other count one gray panel per channel; override to show yours your way."""
        if channels.shape[0] == 3:
            return [channels]
        return [channel[None] for channel in channels]

    @property
    def settings(self) -> dict:
        """Every constructor argument as recorded by `register_to_config`, defaults included."""
        recorded = self.__dict__.get("_internal_dict") or {}  # an encoder without settings need not register any
        return {k: v for k, v in recorded.items() if not k.startswith("_")}

    def to_dict(self) -> dict:
        """The name and the recorded settings: enough to rebuild the encoder."""
        return {"name": self.name, **self.settings}
