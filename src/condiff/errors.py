"""User-facing errors.

A `CondiffError` is a mistake the user can fix (a bad recipe key, a missing file, an unreadable
image). The CLI prints its message on one line and exits with status 2, without a traceback.
Bugs stay ordinary exceptions so that they do show a traceback. Messages show values with `shown`,
cut short, so a huge or self-sharing value is never expanded into one.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any


class CondiffError(Exception):
    """A problem with the user's input; the message names the file/key/value and how to fix it."""

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line user errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- values in messages -------------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (a few items per level, three levels); an integer too long for Python to
    print (over 4300 digits) is described instead."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 60, 60, 60
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxdict = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` in at most `limit` characters, for messages. It never expands a huge or self-sharing
    value (a YAML alias bomb is 10**9 items), so any value can be put in an error."""
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # a repr that fails is still a value to name
        text = f"<a {type(value).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending in "..." where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecipeError(CondiffError):
    """A recipe (YAML file or --set override) is invalid."""


class DataError(CondiffError):
    """A dataset or image could not be read."""


class StorageError(CondiffError):
    """A file or folder could not be written: full disk, read-only folder, file size limit."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason  # the system's short reason, e.g. "No space left on device"


# Markers of torch.save's C++ writer failing (full disk, file size limit): it raises RuntimeError.
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container.cc", "file write failed")


def is_write_failure(err: BaseException) -> bool:
    """Whether `err` is a failed file write (full disk, read-only or vanished folder, size limit).

    Python raises OSError; safetensors' Rust writer raises SafetensorError (matched by name, so that
    this module stays free of heavy imports) and torch.save's C++ writer a RuntimeError.
    """
    if isinstance(err, OSError) or type(err).__name__ == "SafetensorError":
        return True
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in _TORCH_WRITE_FAILURES)


def write_failure_reason(err: BaseException) -> str:
    """A short reason for a failed write, such as 'No space left on device'."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = first_line(err)
    if type(err).__name__ == "SafetensorError":  # "Error while serializing: I/O error: <reason> (os error 28)"
        match = re.search(r"I/O error: (.+?) \(os error \d+\)", text)
        return match.group(1) if match else text
    if isinstance(err, RuntimeError):  # torch's C++ writer does not say why ("unexpected pos 704 vs 598")
        return "torch.save could not write the file"
    return text
