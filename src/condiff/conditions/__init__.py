"""Condition encoders: what a model can be conditioned on, by name.

Importing this package registers the built-in encoders (grayscale, canny, sketch, lowres, inpaint): every
module here is imported, so a new built-in encoder is one new file that calls `register_condition`.
Plugins from other packages are found by name through entry points (see `registry`); `build_encoder`
turns a recipe's condition into its encoder, checking it (the `check_condition` of `condiff.config.load_recipe`).
"""

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import build_encoder, get_condition, list_conditions, register_condition
from condiff.discovery import import_modules

import_modules(__name__, __path__)  # the built-in encoders register themselves

__all__ = ["ConditionEncoder", "build_encoder", "get_condition", "list_conditions", "register_condition"]
