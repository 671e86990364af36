"""Rules for saved settings (a value -> what is wrong with it, or None), checked before anything is built
from a model folder's configs; the tables stand beside what they guard (model_folder, denoiser)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from condiff.errors import shown

Rule = Callable[[Any], "str | None"]  # a config value -> what is wrong with it, or None
HEX_COLOR = re.compile(r"^#[0-9a-f]{6}$")  # how a saved palette writes a colour


def whole(low: int, high: int) -> Rule:
    """A whole number in [low, high]: not a bool, and not 1e9 (a float in JSON)."""
    return lambda v: None if type(v) is int and low <= v <= high else f"must be a whole number from {low} to {high}"


def number(low: float, high: float) -> Rule:
    """An int or float in [low, high] (finite bounds: NaN and infinities fall outside)."""
    wanted = f"must be a number from {low:g} to {high:g}"
    return lambda v: None if type(v) in (int, float) and low <= v <= high else wanted


def one_of(*choices: Any) -> Rule:
    text = ", ".join(json.dumps(choice) for choice in choices)
    wanted = f"must be one of {text}" if len(choices) > 1 else f"must be {text}"
    return lambda v: None if any(type(v) is type(c) and v == c for c in choices) else wanted


def optional(rule: Rule) -> Rule:
    return lambda v: None if v is None else rule(v)


def list_of(rule: Rule, most: int, least: int = 1) -> Rule:
    def check(values: Any) -> str | None:
        if not isinstance(values, list | tuple) or not least <= len(values) <= most:
            return f"must be a list of {least} to {most} entries"
        return next((f"(entry {i}) {problem}" for i, v in enumerate(values) if (problem := rule(v))), None)

    return check


def hex_color(value: Any) -> str | None:
    return None if isinstance(value, str) and HEX_COLOR.match(value) else 'must be a colour "#rrggbb" (lower-case hex)'


def first_problem(values: dict[str, Any], rules: dict[str, Rule]) -> str | None:
    """"key = value what is wrong" for the first value that breaks its rule, or None."""
    for key, rule in rules.items():
        if key in values and (problem := rule(values[key])):
            return f"{key} = {shown(values[key])} {problem}"
    return None
