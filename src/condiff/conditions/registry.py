"""Condition plugins by name.

Built-in encoders register themselves when `condiff.conditions` is imported. Third-party packages
declare theirs in the `condiff.conditions` entry-point group of their pyproject.toml:

    [project.entry-points."condiff.conditions"]
    blur = "my_package.blur:BlurCondition"

Entry points are loaded lazily, once, the first time a name is not found (or when listing).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from condiff.config import ConditionSpec
from condiff.errors import CondiffError

ENTRY_POINT_GROUP = "condiff.conditions"
_REGISTRY: dict[str, type] = {}
_entry_points_loaded = False


def register_condition(name: str) -> Callable[[type], type]:
    """Class decorator: make an encoder available under `name`. A name can be registered once, and no
    setting may be called like a key written beside the settings (`ConditionSpec.FLAT_KEYS`)."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"condition {name!r} is already registered by {_REGISTRY[name].__module__}."
                             f"{_REGISTRY[name].__qualname__}; choose another name")
        clashes = [key for key in ConditionSpec.FLAT_KEYS if key in inspect.signature(cls.__init__).parameters]
        if clashes:
            raise ValueError(f"condition {name!r}: rename the setting(s) {', '.join(clashes)}; "
                             f"{', '.join(ConditionSpec.FLAT_KEYS)} are written beside an encoder's settings")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if entry.name not in _REGISTRY:
                register_condition(entry.name)(cls)
        except Exception as err:  # a broken plugin must not break condiff
            print(f"condiff: warning: could not load condition plugin {entry.name!r} ({entry.value}): {err}")


def get_condition(name: str) -> type:
    """The encoder class registered under `name`."""
    import condiff.conditions  # noqa: F401  (registers the built-ins)

    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        known = list_conditions()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CondiffError(f"unknown condition {name!r}{hint}; known conditions: {', '.join(known)}")
    return _REGISTRY[name]


def list_conditions() -> list[str]:
    import condiff.conditions  # noqa: F401

    _load_entry_points()
    return sorted(_REGISTRY)
