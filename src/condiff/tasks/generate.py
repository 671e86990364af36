"""generate: any conditional model, built-in conditions or plugins (`condiff generate`, the app's Any-model
tab), each condition given its own input or one image for all. No model ships for it and eval has no
measures for it: what a model of unknown conditions should do is for its trainer to measure.
"""

from __future__ import annotations

from condiff.tasks.base import ANY_CONDITION, AppTab, Task, register_task

GENERATE = register_task(Task(
    "generate", ANY_CONDITION, "any conditional model (condiff generate)",
    "generate images from input images with any conditional model", "generated", shipped=False,
    full_res_help=" of the first input (nearest-neighbour enlarged)", app=AppTab("any", "Any model", "conditions")))
