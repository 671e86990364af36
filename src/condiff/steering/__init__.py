"""Sampling-time steering steps and the options that switch them (see `condiff.steering.base`).

Each module here that defines an `OPTION` is a kind of step: a new one is one new file."""

from condiff.discovery import import_modules
from condiff.steering.base import SteeringContext, SteeringOption, Step, check_modes

# Every option a call (and a command) takes, in the order the commands show them: their modules' name order.
OPTIONS: tuple[SteeringOption, ...] = tuple(module.OPTION for module in import_modules(__name__, __path__)
                                            if hasattr(module, "OPTION"))

__all__ = ["OPTIONS", "SteeringContext", "SteeringOption", "Step", "check_modes"]
