"""Training checkpoints: written whole or not at all, found by step, pruned only after success.

A checkpoint is a folder `checkpoints/step-00000500/` holding accelerate's state (model weights as
safetensors, optimizer, LR scheduler, RNG, EMA) and `trainer_state.json` (the loop's `TrainState`
and the recipe it trains). It is written under a temporary name and renamed into place once
complete, so a crash mid-save can never leave a half-written folder that looks like a checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from condiff.errors import CondiffError, StorageError, is_write_failure, write_failure_reason

_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _CHECKPOINT_NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_CHECKPOINT_NAME.match(p.name).group(1)))


def resolve_resume(output_dir: str | Path, resume: str) -> Path:
    """Turn `train.resume` ("latest" or a folder) into a checkpoint folder, or raise."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise CondiffError(
                f"train.resume: latest: no checkpoint in {checkpoints_root(output_dir)}; "
                "remove train.resume to start a fresh run"
            )
        return found[-1]
    path = Path(resume).expanduser()
    root = checkpoints_root(output_dir).resolve()
    if path.resolve().parent != root:
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
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's `trainer_state.json` as saved: `TrainState.to_dict()` and "recipe"."""
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
            _fsync_tree(partial)
            if final.exists():  # re-saving the same step after a resume
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
