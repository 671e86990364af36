"""Model folders: what kind a folder holds, loading it as a pipeline, and writing one.

A model folder is diffusers' own pipeline format (`model_index.json`, `unet/`, `scheduler/`, and for a
conditional model `conditions/`). An unconditional model is written as a plain `DDPMPipeline`, so
`diffusers.DDPMPipeline.from_pretrained(folder)` loads it; a conditional one as a
`ConditionalDDPMPipeline`. `load_pipeline` reads either kind as a `ConditionalDDPMPipeline` (with no
conditions for an unconditional model), so every command samples through the same pipeline.

Local weights are read from safetensors only; a pickled weights file is refused without being unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from condiff.errors import CondiffError, StorageError, first_line, is_write_failure, write_failure_reason

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel

    from condiff.pipeline import ConditionalDDPMPipeline

CONDITIONAL, UNCONDITIONAL = "conditional", "unconditional"


def model_kind(folder: str | Path) -> str:
    """'conditional' or 'unconditional', from a model folder's model_index.json."""
    index = Path(folder).expanduser() / "model_index.json"
    if not index.is_file():
        return UNCONDITIONAL  # a bare UNet folder, checked when it is loaded
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (ValueError, OSError):
        raise CondiffError(f"{index}: unreadable model_index.json; is this a complete model folder?") from None
    return CONDITIONAL if class_name == "ConditionalDDPMPipeline" else UNCONDITIONAL


# --- loading ------------------------------------------------------------------------------------


def load_pipeline(source: str | Path) -> ConditionalDDPMPipeline:
    """Any local model folder as a `ConditionalDDPMPipeline` in float32 (safetensors only); an
    unconditional folder (a diffusers `DDPMPipeline` or a bare UNet) gets an empty condition stack."""
    from condiff.conditions.stack import ConditionStack
    from condiff.pipeline import ConditionalDDPMPipeline

    path = Path(source).expanduser()
    if not path.is_dir():
        what = "a model must be a folder (diffusers format), not a file" if path.exists() else "no such model folder"
        raise CondiffError(f"{source}: {what}; train one (condiff train recipes/quickstart.yaml) or pass --model")
    if model_kind(path) == UNCONDITIONAL:
        return ConditionalDDPMPipeline(unet=load_unet(str(path)), scheduler=load_scheduler(str(path)),
                                       conditions=ConditionStack())
    _refuse_pickled_weights(path)
    try:
        with quiet_diffusers():
            return as_float32(ConditionalDDPMPipeline.from_pretrained(path, use_safetensors=True))
    except CondiffError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise CondiffError(f"{source}: could not load the model ({first_line(err)})") from None


def load_unet(source: str) -> UNet2DModel:
    """Load a UNet from a local pipeline/UNet folder or a Hub id (pipeline repos keep it in `unet/`)."""
    from diffusers import UNet2DModel

    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CondiffError(f"{source}: a model must be a folder (diffusers format), not a file")
        subfolder = _unet_subfolder(path)
        _refuse_pickled_weights(path / (subfolder or ""))
        try:
            return as_float32(UNet2DModel.from_pretrained(path, subfolder=subfolder, use_safetensors=True))
        except (OSError, ValueError, RuntimeError) as err:
            raise CondiffError(f"{source}: could not load the UNet ({first_line(err)})") from None
    errors = []
    for subfolder in ("unet", None):  # Hub: a pipeline repo, then a bare UNet repo
        try:
            return UNet2DModel.from_pretrained(source, subfolder=subfolder)
        except Exception as err:  # huggingface_hub raises many types: offline, not found, gated
            errors.append(first_line(err))
    raise CondiffError(f"{source}: no such local folder, and loading it from the Hub failed ({errors[0]}); "
                       "check the path, or the id and your internet connection")


def load_scheduler(source: str) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    path = Path(source).expanduser()
    folder = path / "scheduler" if (path / "scheduler").is_dir() else path
    try:
        return DDPMScheduler.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise CondiffError(f"{source}: could not read the scheduler config ({first_line(err)})") from None


def _refuse_pickled_weights(folder: Path) -> None:
    has_safetensors = any(folder.rglob("*.safetensors"))
    pickled = [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    if pickled and not has_safetensors:
        raise CondiffError(
            f"{folder}: weights are only in a pickle-based file ({pickled[0].name}); condiff loads "
            "safetensors only. Convert it with diffusers' save_pretrained(safe_serialization=True)"
        )


def _unet_subfolder(path: Path) -> str | None:
    """A pipeline folder keeps the UNet in `unet/`; a bare UNet folder has config.json at its root."""
    if (path / "unet" / "config.json").exists():
        return "unet"
    if (path / "config.json").exists():
        return None
    raise CondiffError(
        f"{path}: not a model folder (no unet/config.json or config.json); "
        "pass a folder written by `condiff train` or a diffusers pipeline/UNet folder"
    )


@contextlib.contextmanager
def quiet_diffusers():
    """No progress bars or notices from diffusers while loading: an error after them must stay one line."""
    from diffusers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def as_float32(model):
    """Shipped weights are fp16 to stay small; compute in float32 (fp16 is slow or missing on CPUs).
    diffusers warns on any `.to(dtype)` of a model; these models have no modules that must stay fp32."""
    import torch

    with quiet_diffusers():
        return model.to(torch.float32)


# --- saving -------------------------------------------------------------------------------------


def save_model(folder: str | Path, unet: UNet2DModel, scheduler: DDPMScheduler, conditions=None) -> None:
    """Write a pipeline folder (safetensors weights): a plain diffusers `DDPMPipeline` for an
    unconditional model, a `ConditionalDDPMPipeline` when the model has condition channels.

    The pipeline is written whole into `folder/.partial-model` first and only then moved into place
    (`model_index.json` last), so a failed write (full disk, read-only folder) leaves an earlier model
    in `folder` untouched; it raises a one-line CondiffError naming the folder.
    """
    if conditions is None or not conditions.channels:
        from diffusers import DDPMPipeline

        pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
    else:
        from condiff.pipeline import ConditionalDDPMPipeline

        pipeline = ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=conditions)
    folder = Path(folder)
    partial = folder / ".partial-model"
    try:
        shutil.rmtree(partial, ignore_errors=True)  # debris of an earlier crash
        folder.mkdir(parents=True, exist_ok=True)
        pipeline.save_pretrained(partial, safe_serialization=True)
        for entry in sorted(partial.iterdir(), key=lambda p: p.name == "model_index.json"):
            target = folder / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        partial.rmdir()
    except Exception as err:
        if not is_write_failure(err):
            raise
        shutil.rmtree(partial, ignore_errors=True)
        reason = write_failure_reason(err)
        raise StorageError(f"could not write the model to {folder} ({reason}); free disk space or choose a "
                           "writable folder", reason) from None
