"""Training checkpoints: written whole or not at all, verified before they are loaded, found by step,
pruned only after success.

A checkpoint is a folder `checkpoints/step-00000500/` holding accelerate's state (model weights as
safetensors, optimizer, LR scheduler, RNG, EMA), `trainer_state.json` (the loop's `TrainState` and
the recipe it trains) and `checksums.json` (the SHA-256 of every other file). It is written under a
temporary name and renamed into place once complete, so a crash mid-save can never leave a
half-written folder that looks like a checkpoint.

A resume reads a checkpoint only after checking it whole: a real folder of real files (a link may lead to
another run's state), every file against its checksum, a random state for every process that saved it,
then every file loaded without running code (torch pickles with `weights_only=True`). A folder copied
from someone else cannot run code here, and a damaged file is named instead of resuming inexactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from condiff.errors import CondiffError, StorageError, first_line, is_write_failure, write_failure_reason

_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})$")
_RANDOM_STATE = re.compile(r"^random_states_([0-9]+)\.pkl$")  # accelerate writes one per process
STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"


class DamagedCheckpoint(CondiffError):
    """A checkpoint file that is missing, extra, a link, differs from its checksum, does not load, or holds
    code; or a checkpoint that is a link."""


@dataclass
class TrainState:
    """What the training loop carries across a resume, beyond accelerate's own state.

    Saved in `trainer_state.json` under exactly these names (with the key "recipe" beside them).
    """

    step: int = 0  # optimizer updates done
    loss_history: list[float] = field(default_factory=list)  # the mean loss of each update
    seconds: float = 0.0  # training time, earlier runs of a resumed run included
    batches_done: int = 0  # batches this process drew: a resumed run goes on at the same batch and epoch
    skipped_updates: int = 0  # updates dropped for a NaN/Inf loss or gradient

    @classmethod
    def from_dict(cls, saved: dict[str, Any], where: str = STATE_FILE) -> TrainState:
        """The state in a `trainer_state.json` (`where`); its other key, the recipe, is the caller's."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in saved]
        if missing:  # only the first development versions wrote fewer keys
            raise CondiffError(f"train.resume: {where} has no {', '.join(missing)}; it was written by an "
                               "older condiff and cannot be resumed")
        return cls(**{name: saved[name] for name in names})


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def _step_entries(output_dir: str | Path) -> list[Path]:
    """Every `step-*` entry of the checkpoints folder that holds a trainer state, oldest first, links too."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _CHECKPOINT_NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_CHECKPOINT_NAME.match(p.name).group(1)))


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The run's own complete checkpoints, oldest first; a link is none (nor counted or pruned as one)."""
    return [p for p in _step_entries(output_dir) if _not_own(p) is None]


def _not_own(checkpoint: Path) -> str | None:
    """Why a checkpoint entry is not a folder of files this run saved, or None: a link to a folder or to a
    file may lead to another run's state, which a resume would take as this run's."""
    if checkpoint.is_symlink():
        return f"{checkpoint} is a link to {os.readlink(checkpoint)}, not a checkpoint this run saved"
    try:
        entries = sorted(checkpoint.iterdir())
    except OSError:  # unreadable: verifying it names the problem
        return None
    for path in entries:
        if path.is_symlink():
            return f"{path} is a link to {os.readlink(path)}, not a file this run saved"
    return None


def resolve_resume(output_dir: str | Path, resume: str, say: Callable[[str], Any] = print) -> Path:
    """Turn `train.resume` ("latest" or a folder) into a checkpoint folder whose files are all intact, or raise.

    With "latest", a damaged newest checkpoint is passed over for the one before it, and `say` tells so
    in one line; a checkpoint named by its folder must be intact.
    """
    if resume == "latest":
        return _latest_intact(output_dir, say)
    path = Path(resume).expanduser()
    root = checkpoints_root(output_dir).resolve()
    if path.parent.resolve() != root:  # the entry itself is not resolved: a link there is refused below
        # Optimizer and RNG states are pickles: only a run's own files are trusted.
        raise CondiffError(
            f"train.resume: {resume} is not a checkpoint of this run; training state is only read from "
            f"{root}; use 'latest' or one of its step-* folders"
        )
    if not (path / STATE_FILE).is_file():
        raise CondiffError(
            f"train.resume: {resume} is not a complete condiff checkpoint (no {STATE_FILE}); "
            f"use 'latest' or one of the folders in {checkpoints_root(output_dir)}"
        )
    try:
        verify_checkpoint(path, say)
    except DamagedCheckpoint as err:
        raise CondiffError(f"train.resume: {err}; resume from another checkpoint in {root}, or use 'latest' "
                           "for the newest intact one") from None
    return path


def _latest_intact(output_dir: str | Path, say: Callable[[str], Any]) -> Path:
    found = _step_entries(output_dir)  # a link among them is passed over with a notice, as a damaged one
    if not found:
        raise CondiffError(
            f"train.resume: latest: no checkpoint in {checkpoints_root(output_dir)}; "
            "remove train.resume to start a fresh run"
        )
    while True:
        checkpoint = found.pop()
        try:
            verify_checkpoint(checkpoint, say)
            return checkpoint
        except DamagedCheckpoint as err:
            if not found:
                raise CondiffError(f"train.resume: latest: {err}, and no earlier checkpoint is intact; start a "
                                   "fresh run with --overwrite (without train.resume)") from None
            say(f"condiff: {err}; resuming from the previous checkpoint {found[-1]} instead")


# --- checking a checkpoint before anything of it is loaded ----------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """`checksums.json`: the SHA-256 of every file in a checkpoint folder being saved."""
    sums = {path.name: _sha256(path) for path in sorted(folder.iterdir())
            if path.is_file() and path.name != CHECKSUMS_FILE}
    (folder / CHECKSUMS_FILE).write_text(json.dumps({"sha256": sums}, indent=1), encoding="utf-8")


def _check_checksums(checkpoint: Path) -> bool:
    """Every file as saved, none missing, none added; False when there are no checksums (older condiff)."""
    listing = checkpoint / CHECKSUMS_FILE
    if not listing.exists():
        return False
    try:
        saved = json.loads(listing.read_text(encoding="utf-8"))["sha256"]
        if not isinstance(saved, dict) or not all(isinstance(v, str) and Path(k).name == k for k, v in saved.items()):
            raise ValueError
    except (ValueError, KeyError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedCheckpoint(f"{listing} is damaged (not a list of checksums)") from None
    present = {path.name for path in checkpoint.iterdir() if path.is_file() and path.name != CHECKSUMS_FILE}
    for name in sorted(present - set(saved)):
        raise DamagedCheckpoint(f"{checkpoint / name} is not in {CHECKSUMS_FILE}: it was added after the save")
    for name, digest in sorted(saved.items()):
        if name not in present:
            raise DamagedCheckpoint(f"{checkpoint / name} is missing")
        if _sha256(checkpoint / name) != digest:
            raise DamagedCheckpoint(f"{checkpoint / name} does not match its checksum: it is damaged or was "
                                    "changed after the save")
    return True


def read_checked(path: Path) -> Any:
    """One checkpoint file, loaded without running code: JSON, safetensors, or a torch pickle that may
    hold only tensors and plain data (with the numpy arrays of accelerate's random states)."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        if path.suffix == ".safetensors":
            return load_file(str(path))
        from accelerate.utils.other import TORCH_SAFE_GLOBALS

        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DamagedCheckpoint(f"{path} holds more than tensors and plain data (loading it could run code), "
                                "so it is not loaded") from None
    except Exception as err:  # every reader's own error for a damaged file: RuntimeError, SafetensorError...
        raise DamagedCheckpoint(f"{path} is damaged: it does not load ({type(err).__name__})") from None


def verify_checkpoint(checkpoint: Path, say: Callable[[str], Any]) -> None:
    """Check a whole checkpoint before any of it is used; raise DamagedCheckpoint naming the first bad file.

    A checkpoint without checksums (an older condiff's) passes with a notice to `say`: its files load
    safely, but a changed byte inside one would go unnoticed.
    """
    foreign = _not_own(checkpoint)
    if foreign:
        raise DamagedCheckpoint(foreign)
    verified = _check_checksums(checkpoint)
    _saved_processes(checkpoint)
    for path in sorted(checkpoint.iterdir()):
        if path.is_file() and path.name != CHECKSUMS_FILE:
            read_checked(path)
    if not verified:
        say(f"condiff: {checkpoint} has no {CHECKSUMS_FILE} (saved by an older condiff), so its files cannot be "
            "verified; resuming from it as it is")


def weights_only_loads() -> contextlib.AbstractContextManager:
    """Every torch.load inside loads tensors and plain data only, also where the caller asks for full
    unpickling, as accelerate does for registered objects (the EMA): torch's documented
    TORCH_FORCE_WEIGHTS_ONLY_LOAD overrides the argument (and its opposite is switched off)."""
    from accelerate.utils import patch_environment

    return patch_environment(TORCH_FORCE_WEIGHTS_ONLY_LOAD="1", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="0")


def _saved_processes(checkpoint: Path) -> int:
    """How many processes saved a checkpoint: accelerate writes random_states_{i}.pkl for i = 0..n-1. A gap,
    or none at all, is a missing file (an older checkpoint has no checksums to tell so)."""
    found = {int(match[1]) for path in checkpoint.iterdir() if (match := _RANDOM_STATE.match(path.name))}
    first_missing = next(i for i in range(len(found) + 1) if i not in found)
    if first_missing < len(found) or not found:
        raise DamagedCheckpoint(f"{checkpoint / f'random_states_{first_missing}.pkl'} is missing: every process "
                                "that saved the checkpoint writes one")
    return len(found)


def load_checkpoint(accelerator, checkpoint: Path) -> None:
    """Restore accelerate's state (weights, optimizer, LR schedule, EMA, RNGs) from a verified checkpoint.

    accelerate only logs a random state it could not restore and goes on; here that stops the resume,
    which would no longer be exact.
    """
    saved_by = _saved_processes(checkpoint)
    if saved_by != accelerator.num_processes:  # another data split, batch size and LR schedule pace
        raise CondiffError(f"train.resume: {checkpoint} was saved by {saved_by} process(es), this run has "
                           f"{accelerator.num_processes}; resume with accelerate launch --num_processes {saved_by} "
                           "to go on exactly")
    rng_file = checkpoint / f"random_states_{accelerator.process_index}.pkl"
    rng = read_checked(rng_file)
    with weights_only_loads():
        try:
            accelerator.load_state(str(checkpoint))
        except (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise CondiffError(f"train.resume: could not load {checkpoint}: {first_line(err)}") from None
    if not _rng_restored(rng):
        raise CondiffError(f"train.resume: the random state in {rng_file} could not be restored, so the run "
                           "would not resume exactly; resume from another checkpoint")


def _rng_restored(saved: Any) -> bool:
    """Whether torch's generators now hold the saved states (accelerate sets Python's and numpy's before
    torch's CPU one, in one step that stops at the first failure)."""
    cpu = saved.get("torch_manual_seed") if isinstance(saved, dict) else None
    if not isinstance(cpu, torch.Tensor) or not torch.equal(torch.get_rng_state(), cpu):
        return False
    if torch.cuda.is_available() and "torch_cuda_manual_seed" in saved:
        now, cuda = torch.cuda.get_rng_state_all(), saved["torch_cuda_manual_seed"]
        return len(now) == len(cuda) and all(torch.equal(a, b.cpu()) for a, b in zip(now, cuda, strict=True))
    return True


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's `trainer_state.json` as saved: the fields of `TrainState` and "recipe"."""
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def save_checkpoint(accelerator, output_dir: str | Path, step: int, trainer_state: dict[str, Any],
                    keep: int) -> Path:
    """Save the full training state for `step` (every process takes part), then prune old ones.

    `trainer_state` is written as `trainer_state.json` (see `read_trainer_state`).

    A failed write (full disk, read-only folder, file size limit) raises a one-line CondiffError: the
    partial folder is removed and the earlier checkpoints stay untouched, the newest still `latest`.
    """
    root = checkpoints_root(output_dir)
    final = root / f"step-{step:08d}"
    partial = root / f".partial-step-{step:08d}"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)  # debris of an earlier crash
            root.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial), safe_serialization=True)
        accelerator.wait_for_everyone()  # every rank has written its RNG state before the rename
        if accelerator.is_main_process:
            (partial / STATE_FILE).write_text(json.dumps(trainer_state), encoding="utf-8")
            write_checksums(partial)  # last, of the files as they are renamed into place
            _fsync_tree(partial)
            if final.is_symlink():  # a link passed over on resume: it goes, not what it leads to
                final.unlink()
            elif final.exists():  # re-saving the same step after a resume
                shutil.rmtree(final)
            os.replace(partial, final)
    except Exception as err:
        if not is_write_failure(err):
            raise
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        earlier = list_checkpoints(output_dir)
        kept = f"the latest checkpoint {earlier[-1]} is intact" if earlier else "no earlier checkpoint exists"
        reason = write_failure_reason(err)
        raise StorageError(
            f"could not write checkpoint {final} ({reason}); free disk space or choose a writable "
            f"train.output_dir; {kept}", reason
        ) from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final
