"""An output folder held by one condiff run at a time: an exclusive `flock` on `FOLDER/.lock`.

Two runs writing into one folder (a training run's `train.output_dir`, `condiff sample --out-dir`,
`condiff colorize FOLDER`'s `FOLDER-colorized/`) would silently replace each other's files. The run
therefore holds an exclusive `flock` on `FOLDER/.lock` from before it looks into the folder until it is
done; the kernel releases it when the process ends, however it ends, so a killed run never leaves a stale
lock (its `.lock` file stays, unlocked, and the next run simply takes it). The file holds the PID of the
run that has it, for the message the next run prints.
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
_PROBE_PREFIX = ".write-test-"  # the writability probe; left behind only by a kill at that very moment


def is_lock_file(name: str) -> bool:
    """Whether a file name in a folder is this lock's own (the lock file or its writability probe): such
    files never make a folder count as holding outputs."""
    return name == LOCK_FILE or name.startswith(_PROBE_PREFIX)


class FolderLock:
    """An exclusive lock on an output folder, created if needed (and removed again if left empty).

    `name` is how messages call the folder (`train.output_dir outputs/run`, `--out-dir samples`),
    `holder` what else may hold it, and `fix` how to choose another folder."""

    def __init__(self, folder: Path, name: str, holder: str = "another condiff run",
                 fix: str = "choose another folder") -> None:
        self.folder, self.path = folder, folder / LOCK_FILE
        self.name, self.holder, self.fix = name, holder, fix
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this lock created, deepest first

    def not_writable(self, err: OSError) -> StorageError:
        reason = write_failure_reason(err)
        return StorageError(f"{self.name} is not writable ({reason}); free disk space or {self.fix}", reason)

    def acquire(self) -> None:
        """Take the lock, or raise: CondiffError when another run holds it, StorageError when the folder
        cannot be written."""
        if self.folder.exists() and not self.folder.is_dir():
            raise CondiffError(f"{self.name} is a file; {self.fix}")
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while self.fd is None:
                self.fd = self._lock_the_file_in_place()
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
            # An old lock file may be writable in a folder that is not: try a file of our own there (one
            # without a name where the system allows it, so that not even a kill leaves it behind).
            with tempfile.TemporaryFile(prefix=_PROBE_PREFIX, dir=self.folder):
                pass
        except OSError as err:
            self.release()
            raise self.not_writable(err) from None
        except BaseException:  # a refusal, or Ctrl-C / SIGTERM midway: nothing of the lock stays
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
            raise CondiffError(f"{self.name} is in use by {self.holder}{pid}; wait for it to finish or stop it, "
                               f"or {self.fix}") from None
        # A run that just finished removes its lock file: a lock on that unlinked file holds nothing.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                return fd
        os.close(fd)
        return None

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
def hold_folder(folder: Path, name: str, fix: str) -> Iterator[FolderLock]:
    """Hold `folder` (created if missing) for the `with` block: a second run into it is refused with one
    line naming it (`name`), the holder's PID and `fix`."""
    lock = FolderLock(folder, name, fix=fix)
    try:  # acquire inside: a signal right after it still releases the lock
        lock.acquire()
        yield lock
    finally:
        lock.release()
