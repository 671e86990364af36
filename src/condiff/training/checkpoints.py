"""Training checkpoints: written whole or not at all, found by step, pruned only after success.

A checkpoint is a folder `checkpoints/step-00000500/` holding accelerate's state (model weights as
safetensors, optimizer, LR scheduler, RNG, EMA) and `trainer_state.json`. It is written under a
temporary name and renamed into place once complete, so a crash mid-save can never leave a
half-written folder that looks like a checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from condiff.errors import CondiffError, StorageError, is_write_failure, write_failure_reason

_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"


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
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def save_checkpoint(accelerator, output_dir: str | Path, step: int, trainer_state: dict[str, Any],
                    keep: int) -> Path:
    """Save the full training state for `step` (every process takes part), then prune old ones.

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
