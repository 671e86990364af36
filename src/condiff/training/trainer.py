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
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from condiff.config import Recipe, flatten, inert_keys, save_recipe
from condiff.device import pick_device
from condiff.errors import CondiffError, StorageError, is_write_failure, write_failure_reason
from condiff.images import to_model_tensor
from condiff.model import use_matmul_attention
from condiff.training.checkpoints import (
    STATE_FILE,
    TrainState,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
    resolve_resume,
    save_checkpoint,
)
from condiff.training.condition_use import PROBE_IMAGES, ConditionUseProbe
from condiff.training.loss import Consistency, diffusion_loss
from condiff.training.run_folder import check_output_dir_named, hold_output_dir, not_writable

# Recipe keys that may change between a checkpoint and its resumed run without changing what is trained.
RESUME_SAFE_KEYS = {
    "train.max_steps", "train.log_every", "train.sample_every", "train.sample_num", "train.sample_sampler",
    "train.sample_steps", "train.checkpoint_every", "train.keep_checkpoints", "train.resume",
    "train.tensorboard", "train.output_dir", "data.num_workers", "train.max_minutes", "train.compile",
}


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_loss: float
    seconds: float


def _trained(recipe: dict[str, Any]) -> dict[str, Any]:
    """The flattened recipe without the keys that train nothing in it (config.inert_keys), so that a change of
    their defaults resumes such runs."""
    flat = flatten(recipe)
    inert = inert_keys(flat)
    return {key: value for key, value in flat.items() if key not in inert}


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose change would make a resumed run train something else than the checkpointed one."""
    old, new = _trained(saved), _trained(current)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if key not in RESUME_SAFE_KEYS and old.get(key) != new.get(key)]


def recipe_as_trained(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's recipe (from its trainer state) with every key that a recipe saved by an earlier condiff
    lacks, as that checkpoint trained: at its default, which keeps what condiff did before the key existed,
    except two defaults that changed what training does: model.pixel_likelihood, which adds the term (as the
    state recorded, without it when the state predates the likelihood too; a run without a head trains
    neither key: config.inert_keys), and model.pixel_likelihood_until, which fades it (null: the term at every
    timestep, as before)."""
    defaults = Recipe().to_dict()
    recipe = {section: {**defaults[section], **values} if isinstance(values, dict) else values
              for section, values in {**defaults, **state["recipe"]}.items()}
    model = state["recipe"].get("model", {})
    if "pixel_likelihood" not in model:
        recipe["model"]["pixel_likelihood"] = state.get("pixel_likelihood", False)
    if "pixel_likelihood_until" not in model:
        recipe["model"]["pixel_likelihood_until"] = None
    return recipe


def hyperparameters(recipe: Recipe) -> dict[str, Any]:
    """The recipe as TensorBoard's hyperparameters: scalars as they are, other values as text."""
    flat = flatten(recipe.to_dict())
    return {key: value if isinstance(value, bool | int | float | str) else str(value) for key, value in flat.items()}


# --- the loop's working parts -------------------------------------------------------------------


def _on_any_process(accelerator, flag: bool) -> bool:
    """Whether `flag` is true on some process: every rank must stop, or skip an update, at the same step."""
    if accelerator.num_processes == 1:
        return flag
    flags = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(flags, reduction="max").item())


@dataclass
class _Run:
    """The parts one training run works with, as accelerate prepared them for this process."""

    accelerator: Any
    unet: Any
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    dataloader: DataLoader
    ema: Any  # a diffusers EMAModel, or None with train.ema: false
    # What the loss calls: the UNet, or with train.compile its torch.compile wrapper, which shares its weights
    # (saving, EMA and previews keep using the plain module, so folders and checkpoints are unchanged).
    forward: Any


class _Clock:
    """Training time, a resumed run's earlier time included, and whether train.max_minutes is spent."""

    def __init__(self, accelerator, seconds_before: float, max_minutes: float | None) -> None:
        self.accelerator, self.seconds_before, self.max_minutes = accelerator, seconds_before, max_minutes
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        if self.max_minutes is None:
            return False
        return _on_any_process(self.accelerator, self.seconds() >= 60 * self.max_minutes)


class _LogWindow:
    """The averages shown and logged every train.log_every steps: loss per update, images per second."""

    def __init__(self) -> None:
        self.update_loss, self.micro_batches = 0.0, 0  # the batches of the update being accumulated
        self.restart()

    def restart(self) -> None:
        self.loss, self.steps, self.images, self.start = 0.0, 0, 0, time.perf_counter()

    def add_batch(self, loss: float, images: int) -> None:
        self.update_loss += loss
        self.micro_batches += 1
        self.images += images

    def end_update(self) -> float:
        """The mean loss of the update just made (over its train.grad_accum batches)."""
        loss = self.update_loss / self.micro_batches
        self.loss += loss
        self.steps += 1
        self.update_loss, self.micro_batches = 0.0, 0
        return loss

    def write(self, accelerator, progress, lr: float, step: int, condition_use: dict[str, float] | None) -> None:
        """Onto the progress bar and into the trackers (tensorboard), then a new window begins;
        `condition_use`: the condition-use gap's values (condiff.training.condition_use), or None."""
        elapsed = time.perf_counter() - self.start
        logs = {"loss": self.loss / self.steps, "lr": lr, "img_per_s": self.images / elapsed}
        shown = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs['lr']:.2e}", "img_s": f"{logs['img_per_s']:.0f}"}
        if condition_use is not None:
            logs.update({f"condition_use/{key.replace(' ', '_')}": value for key, value in condition_use.items()})
            shown["cond_gap"] = f"{condition_use['gap']:.4f}"
        progress.set_postfix(**shown)
        accelerator.log(logs, step=step)
        self.restart()


class _BadUpdates:
    """Updates skipped for a NaN/Inf loss or gradient; train.max_bad_updates of them in a row stop training."""

    def __init__(self, state: TrainState, limit: int) -> None:
        self.state, self.limit, self.in_a_row = state, limit, 0

    def skip(self, what: str) -> None:
        """Count a skipped update (`what`: the loss or the gradient was NaN/Inf), or stop training."""
        self.state.skipped_updates += 1
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise CondiffError(
                f"training stopped at step {self.state.step + 1}: the {what} was NaN or Inf {self.limit} times "
                "in a row (train.max_bad_updates); lower train.lr or use train.mixed_precision: no, then resume "
                "from the last checkpoint with --set train.resume=latest"
            )


class _StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM during training: the first asks to stop after the current step with a
    checkpoint, so no work is lost; a second one stops at once."""

    def __init__(self, accelerator) -> None:
        self.accelerator, self.signal_name, self.previous = accelerator, None, {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._ask)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _ask(self, number: int, frame) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        print(f"\ncondiff: {self.signal_name}: stopping after this step with a checkpoint (again to stop at once)",
              file=sys.stderr, flush=True)

    def requested(self) -> bool:
        return _on_any_process(self.accelerator, self.signal_name is not None)


def _epochs(accelerator, dataloader, batches_done: int, iterable: bool) -> Iterator[Any]:
    """Each epoch's batches in turn, the first one after the `batches_done` a resumed run had drawn.

    The seedable sampler shuffles by epoch number, so a resumed run sees the batches an
    uninterrupted one would have.
    """
    epoch, skip = (0, batches_done) if iterable else divmod(batches_done, len(dataloader))
    while True:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(epoch)
        yield accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        skip, epoch = 0, epoch + 1


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        unet,
        scheduler,
        dataset,
        conditions=None,
        denoiser=None,
        overwrite: bool = False,
        device: str | None = None,
        palette=None,
    ) -> None:
        """`conditions` (a ConditionStack, optional) turns each clean batch into the condition channels
        that are concatenated to the noisy image; it is saved with the model. `denoiser` (condiff.denoiser)
        lays out the UNet's input and reads its output, in the loss and in sampling, and is saved with the
        model; a plain one of the image and the conditions when None. `device` (cpu, cuda, cuda:N, mps)
        overrides accelerate's choice of a single process's device. `palette` (a condiff.palette.FoundPalette,
        optional) is how the data's colours were found, said at the start (the denoiser records them)."""
        from condiff.denoiser import Denoiser

        self.recipe = recipe
        self.unet = unet
        self.scheduler = scheduler
        self.dataset = dataset
        self.conditions = conditions if conditions is not None and conditions.channels else None
        self.overwrite = overwrite
        self.device = device
        self.palette = palette
        self.denoiser = denoiser if denoiser is not None else Denoiser(
            condition_channels=self.conditions.widths if self.conditions else [])
        problem = self.denoiser.unet_problem(unet.config)
        if problem:
            raise CondiffError(f"the UNet does not fit the model's denoiser ({problem}); build both with "
                               "condiff.training.from_recipe.build_parts")
        self.output_dir = Path(recipe.train.output_dir)
        self._consistency = self._consistency_term()

    # --- set-up ---------------------------------------------------------------------------------

    def _consistency_term(self) -> Consistency | None:
        """The recipe's consistency loss, or None when train.consistency_weight is 0; a one-line error when
        no condition offers one (checked here, so parts changed after build_parts are checked too)."""
        train = self.recipe.train
        if train.consistency_weight == 0:
            return None
        if self.conditions is None or not self.conditions.offers_consistency:
            offered = ", ".join(self.conditions.names) if self.conditions else "none"
            raise CondiffError(f"train.consistency_weight = {train.consistency_weight}: no condition of this "
                               f"recipe offers a consistency loss (conditions: {offered}); set it to 0 or add one "
                               "that does (sketch, grayscale)")
        return Consistency(self.conditions.consistency, train.consistency_weight, train.consistency_timesteps)

    def _check_output_dir(self, accelerator) -> None:
        """Never silently train over an earlier run's model or checkpoints; --overwrite starts afresh, also
        from what a run killed before its first checkpoint left (its TensorBoard points would mix in)."""
        cfg = self.recipe.train
        previous = (self.output_dir / "model_index.json").exists() or bool(list_checkpoints(self.output_dir))
        if cfg.resume or not (previous or self.overwrite):
            return
        if not self.overwrite:
            raise CondiffError(
                f"train.output_dir {self.output_dir} already holds a run; continue it with "
                "--set train.resume=latest, pick another train.output_dir, or pass --overwrite"
            )
        if accelerator.is_main_process:
            try:  # the folder was found writable when it was locked; a part of it may still not be
                for name in ("checkpoints", "unet", "scheduler", "conditions", "denoiser", "samples", "logs"):
                    if (self.output_dir / name).exists():
                        shutil.rmtree(self.output_dir / name)
                (self.output_dir / "model_index.json").unlink(missing_ok=True)
            except OSError as err:
                raise not_writable(self.output_dir, err) from None
        accelerator.wait_for_everyone()

    def _palette_state(self) -> dict[str, list[str]]:
        """The data's palette in each checkpoint ("#rrggbb"): the order of a palette head's outputs. (Whether
        the head adds the pixel likelihood is the recipe's model.pixel_likelihood.)"""
        colors = self.denoiser.config.palette
        return {} if colors is None else {"palette": list(colors)}

    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        cfg = self.recipe.train
        if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise CondiffError("train.mixed_precision: fp16 needs a GPU; use bf16 or no on the CPU")
        # Several processes on a machine without a GPU (torchrun / `accelerate launch --multi_gpu`):
        # accelerate only picks gloo on the CPU when told so.
        several_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1
        cpu = not torch.cuda.is_available() and several_processes
        if self.device:
            device = torch.device(pick_device(self.device))
            if device.type != "cpu" and several_processes:
                raise CondiffError(f"--device {self.device}: under accelerate launch each process has its own "
                                   "GPU; leave --device out (or use --device cpu)")
            if device.type == "cuda" and device.index is not None:
                torch.cuda.set_device(device)  # accelerate's single process uses the current CUDA device
            cpu = cpu or device.type == "cpu"
        accelerator = Accelerator(
            cpu=cpu,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            log_with="tensorboard" if cfg.tensorboard else None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            # Seeded, epoch-aware shuffling so a resumed run sees the same order.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        # inductor builds C++ kernels on the CPU; without a compiler it would fail at the first step, deep in torch.
        compilers = (os.environ.get("CXX"), "g++", "c++", "clang++")
        if cfg.compile and accelerator.device.type == "cpu" and not any(shutil.which(c) for c in compilers if c):
            raise CondiffError("train.compile: torch.compile needs a C++ compiler on the CPU and none was found "
                               "(g++, clang++ or $CXX); install one or set train.compile: false")
        return accelerator

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

    def _resume_point(self, accelerator) -> tuple[Path | None, TrainState]:
        """The checkpoint train.resume names and its state, or (None, a fresh state).

        The checkpoint's files are verified, and a changed recipe is refused, before anything is built
        or written.
        """
        cfg = self.recipe.train
        if not cfg.resume:
            return None, TrainState()
        notices: list[str] = []  # a damaged checkpoint passed over, or one without checksums
        checkpoint = resolve_resume(self.output_dir, cfg.resume, say=notices.append)
        saved = read_trainer_state(checkpoint)
        if not isinstance(saved, dict) or not isinstance(saved.get("recipe"), dict):
            raise CondiffError(f"train.resume: {checkpoint / STATE_FILE} holds no recipe; it was not written by "
                               "condiff and cannot be resumed")
        differences = recipe_differences(recipe_as_trained(saved), self.recipe.to_dict())
        if differences:
            raise CondiffError(f"train.resume: {checkpoint} was trained with a different recipe: "
                               + "; ".join(differences) + ". Set these keys back to the checkpoint's values "
                               "(the first of each pair) to resume")
        if self.denoiser.head is not None and saved.get("palette") != self._palette_state().get("palette"):
            raise CondiffError(f"train.resume: the data's palette is not the one {checkpoint} was trained with, and "
                               "a palette head has one output per colour; restore the data, or train into a new "
                               "train.output_dir")
        for notice in notices:
            accelerator.print(notice)
        return checkpoint, TrainState.from_dict(saved, where=str(checkpoint / STATE_FILE))

    def _prepare(self, accelerator) -> _Run:
        """Optimizer, LR schedule, data loader and EMA, handed to accelerate with the UNet."""
        from diffusers import UNet2DModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        cfg = self.recipe.train
        if accelerator.device.type == "cpu":  # torch's fused attention is slow to differentiate on a CPU
            use_matmul_attention(self.unet)
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
            accelerator.register_for_checkpointing(ema)  # saved and restored with the checkpoints
        if cfg.compile:  # diffusers' upsampling calls is_torch_version, cached: dynamo warns, but it is a constant
            warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools\.lru_cache`-wrapped "
                                    r"function at 'upsampling\.py")
        forward = torch.compile(unet) if cfg.compile else unet
        return _Run(accelerator, unet, optimizer, lr_scheduler, dataloader, ema, forward)

    def _start_output(self, accelerator) -> None:
        """The run's recipe first, then the tensorboard logs."""
        if accelerator.is_main_process:
            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                save_recipe(self.recipe, self.output_dir / "recipe.yaml")
            except OSError as err:  # before any training: a read-only or full disk shows up here first
                raise not_writable(self.output_dir, err) from None
        if self.recipe.train.tensorboard:
            accelerator.init_trackers("condiff", config=hyperparameters(self.recipe))

    def _describe_work(self, accelerator, state: TrainState) -> None:
        """One line before the first step: how many images, and how many steps and epochs that is."""
        cfg = self.recipe.train
        per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
        steps = f"{cfg.max_steps - state.step} steps" + (f" from step {state.step}" if state.step else "")
        if isinstance(self.dataset, IterableDataset):
            source = f"an endless stream of {self.recipe.data.source} images"
            epochs = ""
        else:
            source = f"{len(self.dataset):,} images ({self.recipe.data.source})"
            epochs = f", {cfg.max_steps * per_step / len(self.dataset):.1f} epochs"
        accelerator.print(f"condiff: training on {source}: {steps} of {per_step} images{epochs}"
                          + (f", at most {cfg.max_minutes:g} minutes" if cfg.max_minutes else "")
                          + f", on {accelerator.device}" + (f" x {accelerator.num_processes} processes"
                                                            if accelerator.num_processes > 1 else ""))
        if self.palette is not None:
            accelerator.print(f"condiff: {self.palette.note}")

    def _condition_use_probe(self, accelerator) -> ConditionUseProbe | None:
        """The condition-use gap's fixed batch, on the main process of a conditional model (None otherwise)."""
        if self.conditions is None or not accelerator.is_main_process:
            return None
        from condiff.data.sources import unseen_images

        images, what = unseen_images(self.recipe.data, self.dataset, PROBE_IMAGES)
        if len(images) < 2:
            accelerator.print(f"condiff: no condition-use gap: it needs 2 {what}, there is {len(images)}")
            return None
        clean = to_model_tensor(images)
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):  # encoders may draw (a sketch's jitter): not from training's RNG
            torch.manual_seed(0)
            condition = self.conditions.encode_training(clean, apply_dropout=False)
        np.random.set_state(numpy_state)
        accelerator.print(f"condiff: the condition-use gap (loss with shuffled minus true conditions) is measured "
                          f"every {self.recipe.train.log_every} steps on {len(images)} {what}")
        return ConditionUseProbe(self.denoiser, self.scheduler, clean, condition, about=what)

    # --- the loop -------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Train, holding train.output_dir for the whole run: a second run into it is refused."""
        check_output_dir_named(self.recipe.train.output_dir)
        accelerator = self._make_accelerator()
        with hold_output_dir(accelerator, self.output_dir), _StopRequest(accelerator) as self._stop:
            return self._train(accelerator)

    def _train(self, accelerator) -> TrainResult:
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        cfg = self.recipe.train
        self._check_output_dir(accelerator)
        checkpoint, state = self._resume_point(accelerator)  # refused here before anything is built
        set_seed(cfg.seed)
        run = self._prepare(accelerator)
        if checkpoint is not None:
            load_checkpoint(accelerator, checkpoint)  # weights, optimizer, LR schedule, EMA and RNGs
            if run.ema is not None:  # accelerate loads registered objects onto the CPU
                run.ema.to(accelerator.device)
        self._start_output(accelerator)
        if checkpoint is not None:  # said only once the run's folder has proved writable
            accelerator.print(f"condiff: resumed from {checkpoint} at step {state.step}")
        self._describe_work(accelerator, state)
        self._probe = self._condition_use_probe(accelerator)
        self._condition_use: dict[str, float] | None = None  # the probe's last values

        epochs = _epochs(accelerator, run.dataloader, state.batches_done, isinstance(self.dataset, IterableDataset))
        progress = tqdm(total=cfg.max_steps, initial=state.step, disable=not accelerator.is_local_main_process,
                        desc="training", unit="step", dynamic_ncols=True)
        clock = _Clock(accelerator, state.seconds, cfg.max_minutes)
        window, bad_updates = _LogWindow(), _BadUpdates(state, cfg.max_bad_updates)
        try:  # on an error the bar is closed first, so the error message starts on a line of its own
            while state.step < cfg.max_steps and not clock.out_of_time():
                for batch in next(epochs):  # a batch; every train.grad_accum-th one ends an update (a step)
                    clean, condition = self._model_inputs(batch, accelerator.device)
                    state.batches_done += 1
                    loss = self._update(run, clean, condition, bad_updates)
                    if loss is None:  # skipped: a NaN/Inf loss or gradient
                        continue
                    window.add_batch(loss.item(), clean.shape[0] * accelerator.num_processes)
                    if not accelerator.sync_gradients:  # gradients of train.grad_accum batches build up
                        continue
                    bad_updates.in_a_row = 0
                    if self._end_of_step(run, state, window, progress, clock):
                        break
        finally:
            progress.close()

        state.seconds = clock.seconds()
        self._check_weights_finite(run.unet, state.step)
        if state.skipped_updates:
            accelerator.print(f"condiff: skipped {state.skipped_updates} update(s) with a NaN/Inf loss or gradient")
        self._save_final(run, state)
        accelerator.end_training()
        final_loss = state.loss_history[-1] if state.loss_history else math.nan
        return TrainResult(self.output_dir, state.step, final_loss, state.seconds)

    def _model_inputs(self, batch: dict[str, Any], device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Clean images in [-1, 1], with data.random_flip half of them mirrored left-right (torch's RNG, which
        checkpoints save and restore), and their condition channels (None without conditions)."""
        clean = to_model_tensor(batch["image"]).to(device)
        if self.recipe.data.random_flip:
            flip = torch.rand(clean.shape[0], device=clean.device) < 0.5
            clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        return clean, self.conditions.encode_training(clean) if self.conditions else None

    def _update(self, run: _Run, clean: torch.Tensor, condition: torch.Tensor | None,
                bad_updates: _BadUpdates) -> torch.Tensor | None:
        """Forward and backward on one batch; the optimizer steps on the last of train.grad_accum batches.

        Returns the loss, or None when the loss or the gradient was NaN/Inf on some process: then all
        processes drop the update's gradients together.
        """
        cfg, accelerator = self.recipe.train, run.accelerator
        with accelerator.accumulate(run.unet):
            loss = diffusion_loss(self.denoiser, run.forward, self.scheduler, clean, condition, cfg.min_snr_gamma,
                                  self._consistency, ce_weight=cfg.palette_ce_weight,
                                  timestep_sampling=cfg.timestep_sampling)
            if _on_any_process(accelerator, not torch.isfinite(loss).all()):
                run.optimizer.zero_grad(set_to_none=True)
                bad_updates.skip("loss")
                return None
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                norm = accelerator.clip_grad_norm_(run.unet.parameters(), cfg.max_grad_norm)
                if _on_any_process(accelerator, not torch.isfinite(norm).all()):
                    run.optimizer.zero_grad(set_to_none=True)
                    if accelerator.scaler is not None:  # fp16: clipping unscaled these gradients; without an
                        accelerator.scaler.update()     # update the next step's unscale fails, and the scale drops
                    bad_updates.skip("gradient")
                    return None
            run.optimizer.step()
            run.lr_scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
        return loss

    def _end_of_step(self, run: _Run, state: TrainState, window: _LogWindow, progress, clock: _Clock) -> bool:
        """The bookkeeping of one finished update: EMA, loss, log, preview, checkpoint.

        Returns True when training ends with this step (train.max_steps or train.max_minutes).
        """
        cfg = self.recipe.train
        state.step += 1
        if run.ema is not None:
            run.ema.step(run.accelerator.unwrap_model(run.unet).parameters())
        state.loss_history.append(window.end_update())
        progress.update(1)
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            if self._probe is not None:
                self._condition_use = self._probe.measure(run.accelerator.unwrap_model(run.unet))
            window.write(run.accelerator, progress, run.lr_scheduler.get_last_lr()[0], state.step, self._condition_use)
        preview = cfg.sample_every and state.step % cfg.sample_every == 0 and state.step < cfg.max_steps
        if preview and run.accelerator.is_main_process:
            name = f"step-{state.step:08d}.png"
            self._with_ema_weights(run, lambda model: self._samples(run.accelerator, model, name, state.step))
        last = state.step >= cfg.max_steps or clock.out_of_time()  # the same answer on every process
        interrupted = not last and self._stop.requested()
        if (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0) or last or interrupted:
            self._check_weights_finite(run.unet, state.step)
            state.seconds = clock.seconds()
            saved = save_checkpoint(run.accelerator, self.output_dir, state.step,
                                    {**asdict(state), "recipe": self.recipe.to_dict(), **self._palette_state()},
                                    cfg.keep_checkpoints)
        if interrupted:
            progress.close()
            run.accelerator.print(f"condiff: interrupted at step {state.step}; saved the checkpoint {saved}; "
                                  "continue with --set train.resume=latest", file=sys.stderr)
            raise KeyboardInterrupt
        return last

    # --- numerical trouble ---------------------------------------------------------------------

    def _check_weights_finite(self, unet, step: int) -> None:
        """NaN weights must never reach a checkpoint or a saved model."""
        if not all(torch.isfinite(p).all() for p in unet.parameters()):
            raise CondiffError(f"training stopped at step {step}: the weights contain NaN or Inf and were not "
                               "saved; lower train.lr and resume from the last checkpoint")

    # --- what the user gets ---------------------------------------------------------------------

    def _with_ema_weights(self, run: _Run, action: Callable[[Any], Any]) -> Any:
        """Run `action(model)` with the EMA weights swapped in, then put the trained weights back. What it
        samples must not consume the training RNG, or previews would change what is trained."""
        model = run.accelerator.unwrap_model(run.unet)
        with torch.random.fork_rng(devices=[]):
            if run.ema is None:
                return action(model)
            run.ema.store(model.parameters())
            run.ema.copy_to(model.parameters())
            try:
                return action(model)
            finally:
                run.ema.restore(model.parameters())

    def _samples(self, accelerator, model, name: str, step: int) -> None:
        """Samples through the pipeline the commands use, saved as samples/`name` and shown in TensorBoard; a
        conditional model gets the first images' conditions."""
        from condiff.conditions.stack import ConditionStack
        from condiff.pipeline import ConditionalDDPMPipeline
        from condiff.sampling import make_sampler
        from condiff.visualize import make_grid

        cfg = self.recipe.train
        conditions = self.conditions if self.conditions is not None else ConditionStack()
        pipeline = ConditionalDDPMPipeline(unet=model, scheduler=make_sampler(self.scheduler, cfg.sample_sampler),
                                           conditions=conditions, denoiser=self.denoiser)
        pipeline.set_progress_bar_config(disable=True)  # training has its own progress bar
        condition = None
        if self.conditions is not None:
            batch = next(iter(DataLoader(self.dataset, batch_size=cfg.sample_num)))
            clean = to_model_tensor(batch["image"]).to(next(model.parameters()).device)
            condition = self.conditions.encode_training(clean, apply_dropout=False)
        was_training = model.training
        model.eval()
        images = pipeline(batch_size=cfg.sample_num, condition_channels=condition, num_inference_steps=cfg.sample_steps,
                          seed=cfg.seed, output_type="latent", palette="off").images  # the model's own colours
        model.train(was_training)
        grid = make_grid(images, scale=max(1, 128 // self.recipe.data.resolution))
        (self.output_dir / "samples").mkdir(parents=True, exist_ok=True)
        grid.save(self.output_dir / "samples" / name)
        if cfg.tensorboard:
            tracker = accelerator.get_tracker("tensorboard", unwrap=True)
            tracker.add_image("samples", np.asarray(grid), step, dataformats="HWC")

    def _save_final(self, run: _Run, state: TrainState) -> None:
        from condiff.model_card import write_model_card
        from condiff.model_folder import save_model

        accelerator = run.accelerator
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return

        def save(model) -> None:
            save_model(self.output_dir, model, self.scheduler, self.conditions, self.denoiser)
            self._samples(accelerator, model, "final.png", state.step)

        summary = {"steps": state.step, "seconds": round(state.seconds, 1),
                   "final_loss": state.loss_history[-1] if state.loss_history else None,
                   "ema": run.ema is not None, "skipped_updates": state.skipped_updates,
                   "palette": self.palette.note if self.palette is not None else None,
                   "max_steps": self.recipe.train.max_steps,
                   "condition_use": self._probe.summary(self._condition_use) if self._condition_use else None}
        try:
            self._with_ema_weights(run, save)
            (self.output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
            write_model_card(self.output_dir, self.recipe.to_dict(), summary, self.conditions, self.denoiser)
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
