"""A full disk or read-only folder while saving: a one-line error, and nothing already saved is lost.

As root, chmod cannot make a folder read-only, and mounting a tiny file system needs privileges, so
the failures are made two ways: a real kernel write error from a lowered file size limit
(RLIMIT_FSIZE: every write past the limit fails with EFBIG, also inside safetensors' Rust writer and
torch.save's C++ writer, which raise their own exception types), and OSError(ENOSPC / EROFS) raised
from inside the save after a half-written file, exactly as Python reports a full or read-only disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condiff.errors import StorageError
from condiff.training.checkpoints import list_checkpoints
from tests.conftest import four_step_values, train_fails, train_succeeds, write_tiny_recipe

resource = pytest.importorskip("resource")  # Unix only


@contextlib.contextmanager
def file_size_limit(max_bytes: int):
    """Writes beyond `max_bytes` fail with EFBIG (Python ignores SIGXFSZ, so no signal kills us)."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)


def no_debris(run: Path) -> None:
    hidden = [p.name for p in [*run.iterdir(), *(run / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert hidden == []


def half_write_then(code: int):
    """An accelerate save_state that writes part of a file, then meets a full or read-only disk."""

    def save_state(self, output_dir, **kwargs):
        os.makedirs(output_dir, exist_ok=True)
        Path(output_dir, "model.safetensors").write_bytes(b"half a file")
        raise OSError(code, os.strerror(code), output_dir)

    return save_state


# The failures meet the step-4 save; step 2 was saved before.
@pytest.mark.parametrize("failure", ["ENOSPC", "EROFS", "size limit in safetensors", "size limit in torch.save"])
def test_failed_checkpoint_save_keeps_the_previous_one(tmp_path, capsys, monkeypatch, failure):
    import accelerate

    import condiff.training.trainer as trainer_module

    recipe, run = write_tiny_recipe(tmp_path, four_step_values)
    real_save = trainer_module.save_checkpoint

    def save_checkpoint(accelerator, output_dir, step, *args):
        if step < 4:
            return real_save(accelerator, output_dir, step, *args)
        if failure in ("ENOSPC", "EROFS"):
            monkeypatch.setattr(accelerate.Accelerator, "save_state", half_write_then(getattr(errno, failure)))
            return real_save(accelerator, output_dir, step, *args)
        sizes = {p.name: p.stat().st_size for p in (run / "checkpoints/step-00000002").iterdir()}
        assert sizes["model.safetensors"] < sizes["optimizer.bin"]  # the weights are written first
        # A limit below the weights fails in safetensors; one between weights and optimizer in torch.save.
        limit = 64 * 1024 if "safetensors" in failure else (sizes["model.safetensors"] + sizes["optimizer.bin"]) // 2
        with file_size_limit(limit):
            return real_save(accelerator, output_dir, step, *args)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_checkpoint)
    error = train_fails(capsys, str(recipe))
    reason = {"ENOSPC": "No space left on device", "EROFS": "Read-only file system",
              "size limit in safetensors": "(File too large)"}.get(failure, "(torch.save could not write the file)")
    assert f"could not write checkpoint {run / 'checkpoints/step-00000004'} (" in error and reason in error
    assert "free disk space or choose a writable train.output_dir" in error
    assert f"the latest checkpoint {run / 'checkpoints/step-00000002'} is intact" in error
    # The previous checkpoint is untouched and still the latest; the partial folder is gone.
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]
    no_debris(run)
    assert load_file(str(run / "checkpoints/step-00000002/model.safetensors"))
    if failure == "ENOSPC":  # once is enough (a training run): it resumes and finishes
        monkeypatch.undo()
        train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
        assert [p.name for p in list_checkpoints(run)] == ["step-00000002", "step-00000004"]


def test_read_only_output_folder_is_a_clean_error(tmp_path, capsys, monkeypatch):
    import condiff.training.trainer as trainer_module

    def read_only(recipe, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(trainer_module, "save_recipe", read_only)  # the first write of a run
    recipe, run = write_tiny_recipe(tmp_path, four_step_values)
    error = train_fails(capsys, str(recipe))
    assert f"train.output_dir {run} is not writable (Read-only file system)" in error
    assert "choose a writable train.output_dir" in error


def test_failed_model_save_keeps_the_checkpoints_and_resumes(tmp_path, capsys, monkeypatch):
    import condiff.model_folder as model_module

    real_save_model = model_module.save_model

    def save_model_on_a_full_disk(*args, **kwargs):
        with file_size_limit(64 * 1024):
            return real_save_model(*args, **kwargs)

    monkeypatch.setattr(model_module, "save_model", save_model_on_a_full_disk)
    recipe, run = write_tiny_recipe(tmp_path, four_step_values)
    error = train_fails(capsys, str(recipe), "--set", "train.max_steps=2")
    assert f"could not write the model to {run} (File too large)" in error
    assert "then run again with --set train.resume=latest" in error
    assert not (run / "model_index.json").exists() and not (run / "unet").exists()
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]
    no_debris(run)
    # Following the advice writes the model from the last checkpoint.
    monkeypatch.undo()
    train_succeeds(capsys, str(recipe), "--set", "train.max_steps=2", "--set", "train.resume=latest")
    from condiff.model_folder import load_unet

    assert load_unet(str(run)).config.sample_size == 32


@pytest.mark.parametrize("failure", ["size limit in safetensors", "EROFS in the config"])
def test_save_model_fails_cleanly_and_keeps_an_earlier_model(tmp_path, monkeypatch, failure):
    from diffusers import UNet2DModel

    from condiff.config import ModelConfig, SchedulerConfig
    from condiff.model import build_scheduler, build_unet
    from condiff.model_folder import load_unet, save_model

    unet = build_unet(ModelConfig(channels=[32], attention=[False]), 8)
    scheduler = build_scheduler(SchedulerConfig())
    folder = tmp_path / "model"
    save_model(folder, unet, scheduler)
    before = load_file(str(folder / "unet/diffusion_pytorch_model.safetensors"))
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(1.0)

    if failure == "EROFS in the config":
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(UNet2DModel, "save_config", read_only)
        limit = contextlib.nullcontext()
    else:
        limit = file_size_limit(16 * 1024)
    with limit, pytest.raises(StorageError) as caught:
        save_model(folder, unet, scheduler)
    message = str(caught.value)
    reason = "Read-only file system" if failure.startswith("EROFS") else "File too large"
    assert message.startswith(f"could not write the model to {folder} ({reason})") and "\n" not in message
    after = load_unet(str(folder)).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the earlier model, untouched
    assert sorted(p.name for p in folder.iterdir()) == ["denoiser", "model_index.json", "scheduler", "unet"]
