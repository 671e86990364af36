"""condiff: small pixel-space diffusion models you train yourself, unconditional and conditional.

Importing this package is cheap (no torch): the names below load their modules on first use.
diffusers finds saved pipeline components here by name (`condiff.ConditionStack`), and, once condiff
is imported, `diffusers.DiffusionPipeline.from_pretrained` finds `ConditionalDDPMPipeline` by name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
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
    "recipe_from_dict": "condiff.config",
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


# --- letting diffusers find ConditionalDDPMPipeline by name -------------------------------------
# DiffusionPipeline.from_pretrained looks the class named in model_index.json up in diffusers' own
# namespace. When diffusers is imported (already, or later) its lazy namespace learns one more name,
# which imports condiff.pipeline only when asked for: importing condiff still loads no torch.

PIPELINE_CLASS = "ConditionalDDPMPipeline"


class _LazyPipelineName(dict):
    def __contains__(self, name: object) -> bool:
        return name == PIPELINE_CLASS or super().__contains__(name)

    def __getitem__(self, name: str) -> Any:
        if name == PIPELINE_CLASS and not super().__contains__(name):
            return importlib.import_module("condiff.pipeline").ConditionalDDPMPipeline
        return super().__getitem__(name)


def _add_name_to_diffusers(diffusers_module) -> None:
    objects = getattr(diffusers_module, "_objects", None)  # diffusers' lazy module: extra names
    if isinstance(objects, dict) and not isinstance(objects, _LazyPipelineName):
        diffusers_module._objects = _LazyPipelineName(objects)


class _OnDiffusersImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "diffusers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module) -> None:
                execute(module)
                _add_name_to_diffusers(sys.modules.get(name, module))  # diffusers replaces itself by a lazy module

            spec.loader.exec_module = exec_module
        return spec


if "diffusers" in sys.modules:
    _add_name_to_diffusers(sys.modules["diffusers"])
elif not any(isinstance(finder, _OnDiffusersImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _OnDiffusersImport())
