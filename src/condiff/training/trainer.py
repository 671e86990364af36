"""The training loop, on accelerate, for any task.

The trainer is handed its parts (UNet, scheduler, dataset and an optional function that turns a clean
batch into condition channels) and never asks which task it serves. It runs unchanged on one CPU,
one GPU or many processes under `accelerate launch`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from condiff.config import Recipe, flatten, save_recipe
from condiff.errors import CondiffError, StorageError, is_write_failure, write_failure_reason
from condiff.training.checkpoints import (
    list_checkpoints,
    read_trainer_state,
    resolve_resume,
    save_checkpoint,
)
from condiff.training.loss import diffusion_loss

# Recipe keys that may change between a checkpoint and its resumed run without changing what is trained.
RESUME_SAFE_KEYS = {
    "train.max_steps", "train.log_every", "train.sample_every", "train.sample_num", "train.sample_sampler",
    "train.sample_steps", "train.checkpoint_every", "train.keep_checkpoints", "train.resume",
    "train.tensorboard", "train.output_dir", "data.num_workers", "train.max_minutes",
}


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_loss: float
    seconds: float


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose change would make a resumed run train something else than the checkpointed one."""
    old, new = flatten(saved), flatten(current)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if key not in RESUME_SAFE_KEYS and old.get(key) != new.get(key)]


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Mirror half the batch left-right (torch's RNG, which checkpoints save and restore)."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def images_from_batch(batch: dict[str, Any]) -> torch.Tensor:
    """The collated uint8 (N, H, W, 3) images as float (N, 3, H, W) in [-1, 1]."""
    from condiff.images import to_model_tensor

    return to_model_tensor(batch["image"])


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        unet,
        scheduler,
        dataset,
        conditions=None,
        overwrite: bool = False,
    ) -> None:
        """`conditions` (a ConditionStack, optional) turns each clean batch into the condition channels
        that are concatenated to the noisy image; it is saved with the model."""
        self.recipe = recipe
        self.unet = unet
        self.scheduler = scheduler
        self.dataset = dataset
        self.conditions = conditions if conditions is not None and conditions.channels else None
        self.overwrite = overwrite
        self.output_dir = Path(recipe.train.output_dir)

    # --- set-up ---------------------------------------------------------------------------------

    def _check_output_dir(self, accelerator) -> None:
        """Never silently train over an earlier run's model or checkpoints."""
        cfg = self.recipe.train
        previous = (self.output_dir / "model_index.json").exists() or bool(list_checkpoints(self.output_dir))
        if not previous or cfg.resume:
            return
        if not self.overwrite:
            raise CondiffError(
                f"train.output_dir {self.output_dir} already holds a run; continue it with "
                "--set train.resume=latest, pick another train.output_dir, or pass --overwrite"
            )
        if accelerator.is_main_process:
            for name in ("checkpoints", "unet", "scheduler", "samples", "logs"):
                shutil.rmtree(self.output_dir / name, ignore_errors=True)
            (self.output_dir / "model_index.json").unlink(missing_ok=True)
        accelerator.wait_for_everyone()

    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        cfg = self.recipe.train
        if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise CondiffError("train.mixed_precision: fp16 needs a GPU; use bf16 or no on the CPU")
        # Several processes on a machine without a GPU (torchrun / `accelerate launch --multi_gpu`):
        # accelerate only picks gloo on the CPU when told so.
        cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        return Accelerator(
            cpu=cpu_processes,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            log_with="tensorboard" if cfg.tensorboard else None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            # Seeded, epoch-aware shuffling so a resumed run sees the same order.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )

    def _make_dataloader(self, num_processes: int) -> DataLoader:
        cfg = self.recipe.train
        iterable = isinstance(self.dataset, IterableDataset)
        if not iterable and len(self.dataset) < cfg.batch_size * num_processes:
            raise CondiffError(
                f"data.size: the dataset has {len(self.dataset)} images, fewer than one batch "
                f"(train.batch_size {cfg.batch_size} x {num_processes} processes); lower the batch size"
            )
        return DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            shuffle=not iterable,
            drop_last=True,
            num_workers=self.recipe.data.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    # --- the loop -------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        from accelerate.utils import set_seed
        from diffusers import UNet2DModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel
        from tqdm.auto import tqdm

        cfg = self.recipe.train
        accelerator = self._make_accelerator()
        self._check_output_dir(accelerator)
        resume_from = resolve_resume(self.output_dir, cfg.resume) if cfg.resume else None
        if resume_from is not None:
            saved = read_trainer_state(resume_from)
            differences = recipe_differences(saved["recipe"], self.recipe.to_dict())
            if differences:
                raise CondiffError(f"train.resume: {resume_from} was trained with a different recipe: "
                                   + "; ".join(differences) + ". Undo these changes to resume")
        set_seed(cfg.seed)

        optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
        )
        # accelerate steps a prepared LR scheduler once per process per update.
        lr_scheduler = get_scheduler(
            cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
            optimizer=optimizer,
            num_warmup_steps=cfg.warmup_steps * accelerator.num_processes,
            num_training_steps=cfg.max_steps * accelerator.num_processes,
        )
        dataloader = self._make_dataloader(accelerator.num_processes)
        unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(
            self.unet, optimizer, dataloader, lr_scheduler
        )
        ema = None
        if cfg.ema:
            # foreach: one fused update for all tensors, not a few kernel launches per tensor.
            ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=cfg.ema_decay,
                           use_ema_warmup=cfg.ema_warmup, model_cls=UNet2DModel,
                           model_config=accelerator.unwrap_model(unet).config, foreach=True)
            ema.to(accelerator.device)
            accelerator.register_for_checkpointing(ema)

        step, loss_history, seconds_before = 0, [], 0.0
        bad_updates = {"skipped": 0, "in_a_row": 0}
        batches_done = 0
        if resume_from is not None:
            accelerator.load_state(str(resume_from))
            state = read_trainer_state(resume_from)
            step, loss_history, seconds_before = state["step"], state["loss_history"], state["seconds"]
            bad_updates["skipped"] = state.get("skipped_updates", 0)
            batches_done = state.get("batches_done", step * cfg.grad_accum)
            accelerator.print(f"condiff: resumed from {resume_from} at step {step}")
        if accelerator.is_main_process:
            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                save_recipe(self.recipe, self.output_dir / "recipe.yaml")
            except OSError as err:  # before any training: a read-only or full disk shows up here first
                reason = write_failure_reason(err)
                raise StorageError(f"train.output_dir {self.output_dir} is not writable ({reason}); free disk "
                                   "space or choose a writable train.output_dir", reason) from None
        if cfg.tensorboard:
            accelerator.init_trackers("condiff")

        iterable = isinstance(self.dataset, IterableDataset)
        batches_per_epoch = math.inf if iterable else len(dataloader)
        epoch = 0 if iterable else batches_done // batches_per_epoch
        skip = batches_done if iterable else batches_done % batches_per_epoch

        progress = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_local_main_process,
                        desc="training", unit="step", dynamic_ncols=True)
        start = time.perf_counter()
        window_loss, window_steps, window_images, window_start = 0.0, 0, 0, time.perf_counter()
        step_loss, micro_batches = 0.0, 0

        def out_of_time() -> bool:
            if cfg.max_minutes is None:
                return False
            over = seconds_before + time.perf_counter() - start >= 60 * cfg.max_minutes
            if accelerator.num_processes > 1:  # every rank must stop at the same step
                flag = torch.tensor([float(over)], device=accelerator.device)
                over = bool(accelerator.reduce(flag, reduction="max").item())
            return over

        try:  # on an error the bar is closed first, so the error message starts on a line of its own
            while step < cfg.max_steps and not out_of_time():
                if hasattr(dataloader, "set_epoch"):
                    dataloader.set_epoch(epoch)
                epoch_loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
                skip = 0
                for batch in epoch_loader:
                    clean = images_from_batch(batch).to(accelerator.device)
                    if self.recipe.data.random_flip:
                        clean = random_flip(clean)
                    condition = self.conditions.encode_training(clean) if self.conditions else None
                    batches_done += 1
                    with accelerator.accumulate(unet):
                        loss = diffusion_loss(unet, self.scheduler, clean, condition, cfg.min_snr_gamma)
                        if not self._all_finite(accelerator, loss):
                            optimizer.zero_grad(set_to_none=True)
                            self._count_bad_update(bad_updates, step, "loss")
                            continue
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                            norm = accelerator.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm)
                            if not self._all_finite(accelerator, norm):
                                optimizer.zero_grad(set_to_none=True)
                                self._count_bad_update(bad_updates, step, "gradient")
                                continue
                        optimizer.step()
                        lr_scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    step_loss += loss.item()
                    micro_batches += 1
                    window_images += clean.shape[0] * accelerator.num_processes
                    if not accelerator.sync_gradients:
                        continue
                    bad_updates["in_a_row"] = 0
                    # One optimizer update completed.
                    step += 1
                    if ema is not None:
                        ema.step(accelerator.unwrap_model(unet).parameters())
                    loss_history.append(step_loss / micro_batches)
                    window_loss += step_loss / micro_batches
                    window_steps += 1
                    step_loss, micro_batches = 0.0, 0
                    progress.update(1)
                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        elapsed = time.perf_counter() - window_start
                        logs = {"loss": window_loss / window_steps,
                                "lr": lr_scheduler.get_last_lr()[0], "img_per_s": window_images / elapsed}
                        progress.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}",
                                             img_s=f"{logs['img_per_s']:.0f}")
                        accelerator.log(logs, step=step)
                        window_loss, window_steps, window_images, window_start = 0.0, 0, 0, time.perf_counter()
                    if cfg.sample_every and step % cfg.sample_every == 0 and step < cfg.max_steps:
                        self._preview(accelerator, unet, ema, step)
                    last = step >= cfg.max_steps or out_of_time()
                    if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or last:
                        self._check_weights_finite(unet, step)
                        state = {"step": step, "loss_history": loss_history, "recipe": self.recipe.to_dict(),
                                 "seconds": seconds_before + time.perf_counter() - start,
                                 "batches_done": batches_done, "skipped_updates": bad_updates["skipped"]}
                        save_checkpoint(accelerator, self.output_dir, step, state, cfg.keep_checkpoints)
                    if last:
                        break
                epoch += 1
        finally:
            progress.close()

        seconds = seconds_before + time.perf_counter() - start
        self._check_weights_finite(unet, step)
        if bad_updates["skipped"]:
            accelerator.print(f"condiff: skipped {bad_updates['skipped']} update(s) with a NaN/Inf loss or gradient")
        self._save_final(accelerator, unet, ema, step, seconds, loss_history, bad_updates["skipped"])
        accelerator.end_training()
        return TrainResult(self.output_dir, step, loss_history[-1] if loss_history else math.nan, seconds)

    # --- numerical trouble ---------------------------------------------------------------------

    @staticmethod
    def _all_finite(accelerator, value: torch.Tensor) -> bool:
        """True when `value` is finite on every process (all ranks must skip an update together)."""
        finite = torch.isfinite(value.detach().float()).all().float().reshape(1)
        if accelerator.num_processes > 1:
            finite = accelerator.reduce(finite.to(accelerator.device), reduction="sum") / accelerator.num_processes
        return bool(finite.item() == 1.0)

    def _count_bad_update(self, bad_updates: dict[str, int], step: int, what: str) -> None:
        """Skip an update whose loss or gradient is NaN/Inf; stop after train.max_bad_updates in a row."""
        bad_updates["skipped"] += 1
        bad_updates["in_a_row"] += 1
        limit = self.recipe.train.max_bad_updates
        if bad_updates["in_a_row"] >= limit:
            raise CondiffError(
                f"training stopped at step {step + 1}: the {what} was NaN or Inf {limit} times in a row "
                "(train.max_bad_updates); lower train.lr or use train.mixed_precision: no, then resume from "
                "the last checkpoint with --set train.resume=latest"
            )

    def _check_weights_finite(self, unet, step: int) -> None:
        """NaN weights must never reach a checkpoint or a saved model."""
        if not all(torch.isfinite(p).all() for p in unet.parameters()):
            raise CondiffError(f"training stopped at step {step}: the weights contain NaN or Inf and were not "
                               "saved; lower train.lr and resume from the last checkpoint")

    # --- what the user gets ---------------------------------------------------------------------

    def _with_ema_weights(self, accelerator, unet, ema, action: Callable[[Any], Any]) -> Any:
        """Run `action(model)` with the EMA weights swapped in, then put the trained weights back."""
        model = accelerator.unwrap_model(unet)
        if ema is None:
            return action(model)
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        try:
            return action(model)
        finally:
            ema.restore(model.parameters())

    def _preview_grid(self, model, path: Path):
        from condiff.sampling import generate, make_sampler
        from condiff.visualize import make_grid

        cfg = self.recipe.train
        condition, guidance, slices = None, None, None
        if self.conditions is not None:
            batch = next(iter(DataLoader(self.dataset, batch_size=cfg.sample_num)))
            clean = images_from_batch(batch).to(next(model.parameters()).device)
            condition = self.conditions.encode_training(clean, apply_dropout=False)
            guidance, slices = [1.0] * len(self.conditions.encoders), self.conditions.channel_slices
        was_training = model.training
        model.eval()
        samples = generate(model, make_sampler(self.scheduler, cfg.sample_sampler), len(condition)
                           if condition is not None else cfg.sample_num, cfg.sample_steps, seed=cfg.seed,
                           condition=condition, guidance=guidance, condition_slices=slices)
        model.train(was_training)
        grid = make_grid(samples.images, scale=max(1, 128 // self.recipe.data.resolution))
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        return grid

    def _preview(self, accelerator, unet, ema, step: int) -> None:
        if not accelerator.is_main_process:
            return
        # Sampling must not consume the training RNG, or previews would change what is trained.
        with torch.random.fork_rng(devices=[]):
            grid = self._with_ema_weights(
                accelerator, unet, ema,
                lambda model: self._preview_grid(model, self.output_dir / "samples" / f"step-{step:08d}.png"))
        if self.recipe.train.tensorboard:
            import numpy as np

            tracker = accelerator.get_tracker("tensorboard", unwrap=True)
            tracker.add_image("samples", np.asarray(grid), step, dataformats="HWC")

    def _save_final(self, accelerator, unet, ema, step: int, seconds: float, loss_history: list[float],
                    skipped_updates: int) -> None:
        from condiff.model import save_model

        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return

        def save(model) -> None:
            save_model(self.output_dir, model, self.scheduler, self.conditions)
            self._preview_grid(model, self.output_dir / "samples" / "final.png")

        summary = {"steps": step, "seconds": round(seconds, 1), "final_loss": loss_history[-1] if loss_history
                   else None, "ema": ema is not None, "skipped_updates": skipped_updates}
        try:
            with torch.random.fork_rng(devices=[]):
                self._with_ema_weights(accelerator, unet, ema, save)
            (self.output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        except Exception as err:
            if isinstance(err, StorageError):  # from save_model, which left no half-written model behind
                reason = err.reason
            elif is_write_failure(err):  # the preview grid or the summary
                reason = write_failure_reason(err)
            else:
                raise
            raise StorageError(
                f"could not write the model to {self.output_dir} ({reason}); free disk space, then run again "
                "with --set train.resume=latest to write it from the last checkpoint", reason
            ) from None
