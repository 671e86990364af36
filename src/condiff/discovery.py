"""Packages whose modules are plug-ins (condition encoders, steering steps, tasks): importing such a package
imports every module in it, so adding one is adding its file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def import_modules(package: str, path: Iterable[str]) -> list[ModuleType]:
    """Every module of `package` (whose `__path__` is `path`), imported, in name order."""
    found = sorted(pkgutil.iter_modules(path), key=lambda info: info.name)
    return [importlib.import_module(f"{package}.{info.name}") for info in found]
