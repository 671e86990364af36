"""User-facing errors.

A `CondiffError` is a mistake the user can fix (a bad recipe key, a missing file, an unreadable
image). The CLI prints its message on one line and exits with status 2, without a traceback.
Bugs stay ordinary exceptions so that they do show a traceback.
"""

from __future__ import annotations


class CondiffError(Exception):
    """A problem with the user's input; the message names the file/key/value and how to fix it."""

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line user errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class RecipeError(CondiffError):
    """A recipe (YAML file or --set override) is invalid."""


class DataError(CondiffError):
    """A dataset or image could not be read."""
