"""Tasks: what `unconditional`, `colorize`, `sketch2img` and `generate` mean, one module each.

A `Task` is the condition its models need, its shipped model, how an input becomes an output, its command,
its web-app tab and its evaluation. The CLI, the app and `condiff eval` iterate the registered tasks, and
importing this package imports every module here, so a new task is one new module that calls
`register_task`. Importing this package loads neither torch nor numpy.
"""

from condiff.tasks.base import (
           ANY_CONDITION,
           MODELS_ROOT,
           TASKS,
           AppTab,
           Task,
           installed_models,
           list_tasks,
           register_task,
           task_for,
)

# The built-in tasks register in this order, which the commands, the app's tabs and condiff eval keep; any
# other module here registers after them, in name order.
# isort: off
from condiff.tasks.unconditional import UNCONDITIONAL
from condiff.tasks.colorize import COLORIZE, ColorizeTask, recombine_luminance
from condiff.tasks.sketch2img import SKETCH2IMG
from condiff.tasks.generate import GENERATE
# isort: on
from condiff.discovery import import_modules

import_modules(__name__, __path__)

__all__ = ["ANY_CONDITION", "COLORIZE", "GENERATE", "MODELS_ROOT", "SKETCH2IMG", "TASKS", "UNCONDITIONAL", "AppTab",
           "ColorizeTask", "Task", "installed_models", "list_tasks", "recombine_luminance", "register_task",
           "task_for"]
