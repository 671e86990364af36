"""Choosing condiff's defaults: the unconditional recipe against one change at a time, by FD per CPU-minute.

    # 1. on the 2-core CPU, alone: seconds per training step of every model shape and batch in the sweep
    python benchmarks/bench_defaults_sweep.py step-times --json benchmarks/results/step_times.json
    # 2. anywhere (a GPU takes minutes): train each variant for 60 CPU-minutes' worth of steps
    python benchmarks/bench_defaults_sweep.py train --step-times benchmarks/results/step_times.json --out outputs/sweep
    # 3. score the checkpoints at 5, 15, 30 and 60 CPU-minutes
    python benchmarks/bench_time_to_quality.py outputs/sweep/* --step-times benchmarks/results/step_times.json \\
        --json benchmarks/results/defaults_sweep.json

A variant's CPU-minutes are its steps times its step time measured on the CPU (step 1), so every
variant gets the same CPU budget whatever machine trains it: a batch twice as large gets half the
steps, a model twice as slow half the steps. Each variant's learning-rate schedule spans its whole
budget, as a recipe written for that budget would, and it is checkpointed exactly at each target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "unconditional.yaml"

# The defaults the sweep started from (batch 64, no loss weighting); every variant changes them.
ROUND_1_BASE = ["train.batch_size=64", "train.min_snr_gamma=null"]
# One change at a time from the unconditional recipe (name -> recipe overrides).
DIFFUSERS_DEFAULTS = ["train.batch_size=16", "train.lr=1e-4", "train.warmup_steps=500", "train.lr_schedule=cosine",
                      "train.weight_decay=1e-6", "train.ema_decay=0.9999", "scheduler.beta_schedule=linear",
                      "scheduler.prediction_type=epsilon"]
VARIANTS: dict[str, list[str]] = {
    "condiff": [],
    "lr-3e-4": ["train.lr=3e-4"],
    "lr-2e-3": ["train.lr=2e-3"],
    "batch-32": ["train.batch_size=32"],
    "batch-128": ["train.batch_size=128"],
    "min-snr-5": ["train.min_snr_gamma=5.0"],
    "timesteps-500": ["scheduler.num_train_timesteps=500"],
    "ema-0.9999": ["train.ema_decay=0.9999"],
    "layers-2": ["model.layers_per_block=2"],
    "wide-64": ["model.channels=[64,128,256]"],
    "epsilon-linear": ["scheduler.prediction_type=epsilon", "scheduler.beta_schedule=linear"],
    "diffusers-defaults": DIFFUSERS_DEFAULTS,
    # Second round: the changes that won the first, together.
    "min-snr-5+batch-32": ["train.min_snr_gamma=5.0", "train.batch_size=32"],
    "min-snr-5+lr-2e-3": ["train.min_snr_gamma=5.0", "train.lr=2e-3"],
    "min-snr-5+batch-32+lr-2e-3": ["train.min_snr_gamma=5.0", "train.batch_size=32", "train.lr=2e-3"],
    # Third round (issue 14): today's recipe (min-snr-5+batch-32) at a longer budget, wider, and without the
    # loss weighting that gives low noise levels almost no weight (benchmarks/results/NOTES.md).
    "min-snr-5+batch-32+wide-64": ["train.min_snr_gamma=5.0", "train.batch_size=32", "model.channels=[64,128,256]"],
    "batch-32+wide-64": ["train.batch_size=32", "model.channels=[64,128,256]"],
}
COST_KEYS = ("train.batch_size", "model.layers_per_block", "model.channels")  # all that changes a step's time
TARGET_MINUTES = (5, 15, 30, 60)


def cost_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change a step's compute."""
    return [o for o in overrides if o.split("=")[0] in COST_KEYS]


def cost_key(overrides: list[str]) -> str:
    """Variants with the same key share one step time."""
    return " ".join(cost_overrides(overrides)) or "default"


def time_steps(overrides: list[str], steps: int) -> float:
    """Seconds per training step of the recipe with `overrides` (steps 3..N, after warm-up)."""
    from condiff.config import load_recipe
    from condiff.training.from_recipe import train_recipe

    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (2, 2 + steps):
            recipe = load_recipe(str(RECIPE), [*ROUND_1_BASE, *overrides, f"train.max_steps={count}",
                                               "train.sample_every=0", "train.checkpoint_every=0",
                                               "train.tensorboard=false", f"train.output_dir={tmp}/run",
                                               "train.warmup_steps=1", "data.size=4096"])
            train_recipe(recipe, overwrite=True)
            seconds.append(json.loads((Path(tmp) / "run" / "training_summary.json").read_text())["seconds"])
    return (seconds[1] - seconds[0]) / steps


def step_times(args: argparse.Namespace) -> None:
    from machine import describe

    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU-minutes are measured on the CPU
    keys = {cost_key(overrides): cost_overrides(overrides) for overrides in VARIANTS.values()}
    times = {}
    for key, overrides in keys.items():
        batch = next((int(o.split("=")[1]) for o in overrides if o.startswith("train.batch_size")), 64)
        steps = max(8, args.images // batch)
        times[key] = time_steps(overrides, steps)
        print(f"{key:40} {times[key]:.3f} s/step ({steps} steps)", flush=True)
    result = {"machine": describe("cpu"), "cost_seconds_per_step": times,
              "variants": {name: times[cost_key(overrides)] for name, overrides in VARIANTS.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def variant_overrides(name: str, seconds_per_step: float, out: Path, wall_minutes: float | None) -> list[str]:
    every = round(TARGET_MINUTES[0] * 60 / seconds_per_step)  # every target is a multiple of the first
    steps = every * (TARGET_MINUTES[-1] // TARGET_MINUTES[0])
    overrides = [*ROUND_1_BASE, *VARIANTS[name], f"train.max_steps={steps}", f"train.checkpoint_every={every}",
                 "train.keep_checkpoints=100", "train.sample_every=0", "train.tensorboard=false",
                 f"train.output_dir={out / name}"]
    return overrides + ([f"train.max_minutes={wall_minutes}"] if wall_minutes else [])


def train(args: argparse.Namespace) -> None:
    """Trains the variants side by side, `--parallel` at a time (small models leave a GPU mostly idle)."""
    per_step = json.loads(Path(args.step_times).read_text())["variants"]
    names = args.only or list(VARIANTS)
    args.out.mkdir(parents=True, exist_ok=True)
    waiting, running = list(names), {}
    start = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < args.parallel:
            name = waiting.pop(0)
            sets = [item for o in variant_overrides(name, per_step[name], args.out, args.wall_minutes)
                    for item in ("--set", o)]
            (args.out / name).mkdir(exist_ok=True)
            log = open(args.out / name / "train.log", "w")  # noqa: SIM115 - closed when the process ends
            command = [sys.executable, "-m", "condiff", "train", str(RECIPE), *sets, "--overwrite"]
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
        time.sleep(2)
        for name, (process, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                del running[name]
                print(f"{name}: exit {process.returncode} after {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    times = commands.add_parser("step-times", help="measure each shape's CPU seconds per step")
    times.add_argument("--images", type=int, default=1600, help="images per measurement (default 1600)")
    times.add_argument("--json")
    runs = commands.add_parser("train", help="train every variant for its CPU-minute budget")
    runs.add_argument("--step-times", required=True)
    runs.add_argument("--out", type=Path, default=Path("outputs/sweep"))
    runs.add_argument("--parallel", type=int, default=1)
    runs.add_argument("--only", nargs="+", choices=list(VARIANTS))
    runs.add_argument("--wall-minutes", type=float, help="stop each run after this much real time")
    args = parser.parse_args()
    {"step-times": step_times, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
