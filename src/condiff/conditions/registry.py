"""Condition plugins by name.

Built-in encoders register themselves when `condiff.conditions` is imported. Third-party packages
declare theirs in the `condiff.conditions` entry-point group of their pyproject.toml:

    [project.entry-points."condiff.conditions"]
    blur = "my_package.blur:BlurCondition"

Entry points are loaded lazily, once, the first time a name is not found (or when listing). A plugin
that fails to load (any exception, `sys.exit` included), or whose entry point is not a ConditionEncoder
class, is left out with a warning on stderr naming it and its package; condiff goes on without it.

`build_encoder` turns a recipe's condition (`condiff.config.ConditionSpec`) into its encoder, checked: it is
the `check_condition` that callers hand `condiff.config.load_recipe`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points, packages_distributions

from condiff.conditions.base import ConditionEncoder
from condiff.config import ConditionSpec
from condiff.errors import CondiffError, RecipeError, cut, first_line, shown

ENTRY_POINT_GROUP = "condiff.conditions"
_REGISTRY: dict[str, type] = {}
_FAILED: dict[str, str] = {}  # plugin name -> why it was not loaded
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
        problem = _load_plugin(entry)
        if problem:
            _FAILED[entry.name] = problem
            print(f"condiff: warning: condition plugin {entry.name!r} ({_origin(entry)}) was not loaded: {problem}",
                  file=sys.stderr)


def _load_plugin(entry: EntryPoint) -> str | None:
    """Register one entry point; why it could not be, or None. A broken plugin must not break condiff."""
    try:
        cls = entry.load()
    except SystemExit as err:
        return f"importing it called sys.exit({shown(err.code)})"
    except Exception as err:
        return f"{type(err).__name__}: {first_line(err)[:120]}"
    if not isinstance(cls, type):
        return f"{entry.value} is not a class but {shown(cls)}"
    if not issubclass(cls, ConditionEncoder):
        return f"{entry.value} is not a ConditionEncoder subclass"
    try:
        register_condition(entry.name)(cls)
    except ValueError as err:  # the name is taken, or a setting clashes with name/dropout
        return first_line(err)
    return None


def _origin(entry: EntryPoint) -> str:
    """"blur = my_blur.condition:BlurCondition from my-blur 0.1": the entry point and its package."""
    dist = getattr(entry, "dist", None)
    package = f"{dist.name} {dist.version}" if dist is not None else "an unknown package"
    return f"{entry.value} from {package}"


def get_condition(name: str) -> type:
    """The encoder class registered under `name`. The built-ins are registered already: importing this
    module runs the package's __init__, which imports them."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        known = list_conditions()
        if name in _FAILED:
            raise CondiffError(f"unknown condition {shown(name)}: its plugin was not loaded ({_FAILED[name]}); "
                               f"known conditions: {', '.join(known)}")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CondiffError(f"unknown condition {shown(name)}{hint}; known conditions: {', '.join(known)}")
    return _REGISTRY[name]


def list_conditions() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


_distributions = functools.cache(packages_distributions)  # {top-level module: its distributions}, slow to build


def provider(encoder_class: type) -> str:
    """The distribution (pip name) that provides an encoder class: condiff for the built-ins."""
    top = encoder_class.__module__.split(".")[0]
    return (_distributions().get(top) or [top])[0]


def build_encoder(spec: ConditionSpec, where: str) -> ConditionEncoder:
    """The encoder `spec` describes. Its name (against the registry), settings (against the encoder's
    arguments; numbers finite) and values (the encoder's own checks: a ValueError from its __init__) are
    checked here, and only here: each mistake is a RecipeError starting with `where`."""
    try:
        cls = get_condition(spec.name)
    except CondiffError as err:
        if spec.package and spec.package != "condiff":  # a saved model knows where its plugin comes from
            raise RecipeError(f"{where}: condition {shown(spec.name)} comes from the package {spec.package}, "
                              f"which is not installed: pip install {spec.package}") from None
        raise RecipeError(f"{where}: {err}") from None
    settings = spec.checked_settings(cls, where)
    try:
        return cls(**settings)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{where}: bad value for condition {shown(spec.name)}: {_refusal(err)}") from None


def _refusal(err: TypeError | ValueError) -> str:
    """An encoder's refusal as a sentence: its own ValueError message, or what a TypeError means (an
    encoder without annotations compared text with a number, or lacks a required setting)."""
    text = first_line(err)
    if not isinstance(err, TypeError):
        return cut(text, 200)
    missing = re.findall(r"'(\w+)'", text) if "required" in text else []
    if missing:
        return f"it needs the setting(s) {', '.join(missing)}"
    return "a setting has the wrong type (e.g. text where a number is needed)"
