"""The run's output folder: named, writable, and held by one training run at a time.

Two runs started into one `train.output_dir` would silently replace each other's model and
checkpoints. The main process therefore holds an exclusive `flock` on `output_dir/.lock` for the
whole run; the kernel releases it when the process ends, however it ends, so a killed run never
leaves a stale lock (its `.lock` file stays, unlocked, and the next run simply takes it). The file
holds the PID of the run that has it, for the message the next run prints.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from condiff.errors import CondiffError, StorageError, write_failure_reason

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not protected from each other there
    fcntl = None

LOCK_FILE = ".lock"


def check_output_dir_named(value: str) -> None:
    """An empty train.output_dir would be the current folder: training among the user's own files."""
    if not str(value).strip():
        raise CondiffError("train.output_dir is empty, which would train into the current folder; name a "
                           "folder for the run, e.g. --set train.output_dir=outputs/my-run")


def not_writable(folder: Path, err: OSError) -> StorageError:
    reason = write_failure_reason(err)
    return StorageError(f"train.output_dir {folder} is not writable ({reason}); free disk space or choose a "
                        "writable train.output_dir", reason)


class OutputLock:
    """An exclusive lock on a run's output folder, created if needed (and removed again if left empty)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder, folder / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this lock created, deepest first

    def acquire(self) -> None:
        """Take the lock, or raise: CondiffError when another run holds it, StorageError when the folder
        cannot be written."""
        if self.folder.exists() and not self.folder.is_dir():
            raise CondiffError(f"train.output_dir {self.folder} is a file; name a folder for the run")
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while self.fd is None:
                self.fd = self._lock_the_file_in_place()
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
            # An old lock file may be writable in a folder that is not: try a file of our own there.
            probe, name = tempfile.mkstemp(prefix=".write-test-", dir=self.folder)
            os.close(probe)
            os.unlink(name)
        except OSError as err:
            self.release()
            raise not_writable(self.folder, err) from None
        except CondiffError:
            self.release()
            raise

    def _lock_the_file_in_place(self) -> int | None:
        """The lock file's descriptor, locked; None when the file was replaced meanwhile (try again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            pid = f" (PID {holder})" if holder.isdigit() else ""
            raise CondiffError(
                f"train.output_dir {self.folder} is in use by another training run{pid}; wait for it to "
                "finish or stop it, or choose another train.output_dir") from None
        # A run that just finished removes its lock file: a lock on that unlinked file holds nothing.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return fd

    def release(self) -> None:
        """Remove the lock file while still holding it, then unlock; remove folders created for nothing."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote something there
                break
        self.created = []


@contextlib.contextmanager
def hold_output_dir(accelerator, folder: Path) -> Iterator[None]:
    """Hold `folder` for the run. The main process locks; the others learn its outcome, so that under
    `accelerate launch` every process stops with the same one-line error."""
    lock = OutputLock(folder)
    outcome: list = [None, ""]
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
    try:
        yield
    finally:
        lock.release()
