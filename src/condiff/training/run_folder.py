"""The run's output folder: named, writable, and held by one training run at a time.

Two runs started into one `train.output_dir` would silently replace each other's model and
checkpoints. The main process therefore holds the folder for the whole run (`condiff.folder_lock`: an
exclusive `flock` on `output_dir/.lock`, which every command writing into a folder takes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from condiff.errors import CondiffError, StorageError, write_failure_reason
from condiff.folder_lock import FolderLock


def check_output_dir_named(value: str) -> None:
    """An empty train.output_dir would be the current folder: training among the user's own files."""
    if not str(value).strip():
        raise CondiffError("train.output_dir is empty, which would train into the current folder; name a "
                           "folder for the run, e.g. --set train.output_dir=outputs/my-run")


def not_writable(folder: Path, err: OSError) -> StorageError:
    reason = write_failure_reason(err)
    return StorageError(f"train.output_dir {folder} is not writable ({reason}); free disk space or choose a "
                        "writable train.output_dir", reason)


class OutputLock(FolderLock):
    """The training run's hold on its output folder (condiff.folder_lock), its messages naming the setting."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, f"train.output_dir {folder}", holder="another training run",
                         fix="choose another train.output_dir")

    def not_writable(self, err: OSError) -> StorageError:
        return not_writable(self.folder, err)


@contextlib.contextmanager
def hold_output_dir(accelerator, folder: Path) -> Iterator[None]:
    """Hold `folder` for the run. The main process locks; the others learn its outcome, so that under
    `accelerate launch` every process stops with the same one-line error."""
    lock = OutputLock(folder)
    outcome: list = [None, ""]
    try:  # everything inside: a signal at any point still releases the lock
        if accelerator.is_main_process:
            try:
                lock.acquire()
            except CondiffError as err:
                outcome = [type(err).__name__, str(err)]
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(outcome)
        if outcome[0] is not None:
            raise (StorageError if outcome[0] == "StorageError" else CondiffError)(outcome[1])
        yield
    finally:
        lock.release()
