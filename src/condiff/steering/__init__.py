"""Sampling-time steering steps and the options that switch them (see `condiff.steering.base`)."""

from condiff.steering import lightness, palette, silhouette
from condiff.steering.base import SteeringContext, SteeringOption, Step, check_modes

# Every option a call (and a command) takes, in the order the commands show them.
OPTIONS: tuple[SteeringOption, ...] = (palette.OPTION, silhouette.OPTION, lightness.OPTION)

__all__ = ["OPTIONS", "SteeringContext", "SteeringOption", "Step", "check_modes"]
