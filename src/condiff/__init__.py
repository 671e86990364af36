"""condiff: small pixel-space diffusion models you train yourself, unconditional and conditional.

Importing this package is cheap (no torch): the names below load their modules on first use.
diffusers finds saved pipeline components here by name (`condiff.ConditionStack`).
"""

from __future__ import annotations

import importlib
from typing import Any

from condiff.errors import CondiffError

__version__ = "0.1.0"

_LAZY = {
    "ConditionEncoder": "condiff.conditions.base",
    "register_condition": "condiff.conditions.registry",
    "get_condition": "condiff.conditions.registry",
    "list_conditions": "condiff.conditions.registry",
    "ConditionStack": "condiff.conditions.stack",
    "ConditionalDDPMPipeline": "condiff.pipeline",
    "load_pipeline": "condiff.model_folder",
    "make_sampler": "condiff.sampling",
    "TASKS": "condiff.tasks",
    "load_recipe": "condiff.config",
    "Recipe": "condiff.config",
    "Trainer": "condiff.training.trainer",
    "train_recipe": "condiff.training.from_recipe",
    "generate": "condiff.sampling",
}
__all__ = ["CondiffError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'condiff' has no attribute {name!r}")
