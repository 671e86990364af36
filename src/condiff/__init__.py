"""condiff: small pixel-space diffusion models you train yourself, unconditional and conditional.

Importing this package is cheap (no torch): the names below load their modules on first use.
diffusers finds saved pipeline components by the module and class model_index.json records, and, once
condiff is imported, `diffusers.DiffusionPipeline.from_pretrained` finds `ConditionalDDPMPipeline` by name.
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
    "Denoiser": "condiff.denoiser",
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
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # condiff.tasks works after `import condiff` alone
    raise AttributeError(f"module 'condiff' has no attribute {name!r}")


# --- letting diffusers find ConditionalDDPMPipeline by name -------------------------------------
# DiffusionPipeline.from_pretrained looks the class named in model_index.json up as an attribute of the
# diffusers module; condiff.pipeline sets that attribute when it is imported (no change to diffusers' own
# state). Importing condiff alone loads no torch: once diffusers' pipeline module is loaded (already, or later:
# a finder on Python's import path waits for it), condiff.pipeline is imported too.

_DIFFUSERS_PIPELINES = "diffusers.pipelines.pipeline_utils"  # where DiffusionPipeline lives


def _import_pipeline() -> None:
    spec = getattr(sys.modules.get("condiff.pipeline"), "__spec__", None)
    if not getattr(spec, "_initializing", False):  # condiff.pipeline itself loading diffusers: it names itself
        importlib.import_module("condiff.pipeline")


class _OnDiffusersPipelines(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != _DIFFUSERS_PIPELINES:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module) -> None:
                execute(module)
                _import_pipeline()

            spec.loader.exec_module = exec_module
        return spec


if _DIFFUSERS_PIPELINES in sys.modules:
    _import_pipeline()
elif not any(isinstance(finder, _OnDiffusersPipelines) for finder in sys.meta_path):
    sys.meta_path.insert(0, _OnDiffusersPipelines())
