"""Training throughput: condiff's trainer against a plain diffusers training loop, side by side.

    python benchmarks/bench_training_throughput.py [--steps 40] [--batch 64] [--device cuda] [--bf16] [--compile]
        [--json FILE]

Both train the identical UNet (recipes/unconditional.yaml's shape) on the identical rendered Nouns with
the same batch, optimizer (AdamW), EMA and loss. The plain loop is the diffusers tutorial's style:
a `datasets.Dataset` of PIL images, per-sample PIL transforms in `with_transform`, a DataLoader.
Each runs in its own process (so peak RSS is its own) with torch's default threads. Also prints the
achieved GFLOP/s of each (FLOPs of one step counted by torch's FlopCounterMode) against a float32
matmul on the same machine, the ceiling for this CPU. On a GPU (the default when there is one) both
loops run there, the matmul is an 8192² one on the GPU, and peak GPU memory is reported too.
Every loop's first WARMUP_STEPS steps are left out of its time (a compiled loop compiles there; the
compile's cost, beyond the uncompiled loop's warm-up, is printed, with the steps after which it is paid back).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import add_run_arguments

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "unconditional.yaml"
WARMUP_STEPS = 5  # not timed in any loop: the first steps' one-off costs (a compile) are reported apart


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unet_and_scheduler():
    from condiff.config import load_recipe
    from condiff.model import build_scheduler, build_unet

    recipe = load_recipe(str(RECIPE))
    return recipe, build_unet(recipe.model, recipe.data.resolution), build_scheduler(recipe.scheduler)


def step_flops(batch: int) -> float:
    """FLOPs of one training step (forward and backward) of the recipe's UNet."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _, unet, _ = unet_and_scheduler()
    images = torch.randn(batch, 3, unet.config.sample_size, unet.config.sample_size)
    with FlopCounterMode(display=False) as counter:
        unet(images, torch.randint(0, 1000, (batch,))).sample.square().mean().backward()
    return float(counter.get_total_flops())


def peak_gpu_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def steady(step_ends: list[float], start: float, batch: int) -> dict:
    """Seconds of the WARMUP_STEPS first steps (from `start`: a compile happens there), and the seconds and
    images of the steps after them, from the wall-clock times at which each step ended."""
    return {"warmup_s": step_ends[WARMUP_STEPS - 1] - start, "seconds": step_ends[-1] - step_ends[WARMUP_STEPS - 1],
            "images": (len(step_ends) - WARMUP_STEPS) * batch}


def run_condiff(steps: int, batch: int, device: str, mixed_precision: str = "no", compile: bool = False) -> dict:
    """condiff's trainer for WARMUP_STEPS + `steps` steps, each step's end taken from its bookkeeping. With
    `compile`, into a fresh inductor cache: the cold compile a user's first run pays."""
    from condiff.config import load_recipe
    from condiff.training import trainer
    from condiff.training.from_recipe import train_recipe

    step_ends: list[float] = []
    end_of_step = trainer.Trainer._end_of_step

    def timed_end_of_step(*args, **kwargs) -> bool:
        step_ends.append(time.perf_counter())  # the update has run: loss.item() waited for the device
        return end_of_step(*args, **kwargs)

    trainer.Trainer._end_of_step = timed_end_of_step
    total = WARMUP_STEPS + steps
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{tmp}/inductor"
        overrides = [f"train.max_steps={total}", f"train.batch_size={batch}", "train.sample_every=0",
                     "train.checkpoint_every=0", "train.tensorboard=false", f"train.output_dir={tmp}/run",
                     "train.warmup_steps=1", f"data.size={total * batch}", f"train.mixed_precision={mixed_precision}",
                     f"train.compile={str(compile).lower()}"]
        recipe = load_recipe(str(RECIPE), overrides)
        start = time.perf_counter()
        train_recipe(recipe, overwrite=True)  # on the GPU when there is one, like `condiff train`
    return steady(step_ends, start, batch)


def run_plain(steps: int, batch: int, device: str) -> dict:
    """The diffusers tutorial's loop, written plainly."""
    import numpy as np
    import torch
    from datasets import Dataset
    from diffusers.training_utils import EMAModel
    from machine import synchronize
    from PIL import Image

    from condiff.data.nouns import NounsDataset

    torch.manual_seed(0)
    recipe, unet, scheduler = unet_and_scheduler()
    nouns = NounsDataset((WARMUP_STEPS + steps) * batch, seed=recipe.data.seed)
    dataset = Dataset.from_dict({"image": [Image.fromarray(nouns[i]["image"]) for i in range(len(nouns))]})
    size = recipe.data.resolution

    def transform(examples):
        images = []
        for image in examples["image"]:
            image = image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
            if np.random.rand() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
            images.append(array.permute(2, 0, 1))
        return {"input": images}

    loader = torch.utils.data.DataLoader(dataset.with_transform(transform), batch_size=batch, shuffle=True)
    unet.to(device)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=recipe.train.lr)
    ema = EMAModel(unet.parameters(), decay=recipe.train.ema_decay)
    unet.train()
    step_ends: list[float] = []
    start = time.perf_counter()
    for step, examples in enumerate(loader):
        clean = examples["input"].to(device)
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), device=device)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        target = scheduler.get_velocity(clean, noise, timesteps)  # the same v-prediction loss as condiff
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps).sample, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        if step + 1 in (WARMUP_STEPS, WARMUP_STEPS + steps):
            synchronize(device)
        step_ends.append(time.perf_counter())
        if step + 1 == WARMUP_STEPS + steps:
            break
    return steady(step_ends, start, batch)


def batch_seconds(result: dict, batch: int) -> float:
    return batch / result["img_per_s"]


def run_matmul(device: str) -> dict:
    """Best of 5 float32 matmuls on random data: the arithmetic ceiling of this device."""
    import torch
    from machine import synchronize

    n = 8192 if device.startswith("cuda") else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9, "size": n}


def child(kind: str, steps: int, batch: int, device: str) -> dict:
    if kind == "matmul":
        result = run_matmul(device)
    else:
        runs = {"condiff": run_condiff, "plain": run_plain,
                "condiff-bf16": lambda *args: run_condiff(*args, mixed_precision="bf16"),
                "condiff-compile-bf16": lambda *args: run_condiff(*args, mixed_precision="bf16", compile=True)}
        result = runs[kind](steps, batch, device)
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = peak_gpu_mb(device)
    return result


def in_subprocess(kind: str, steps: int, batch: int, device: str) -> dict:
    # condiff's trainer takes the GPU whenever it sees one, so a CPU measurement hides it.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else None
    output = subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(steps), "--batch", str(batch),
                             "--device", device], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, steps=40)
    parser.add_argument("--bf16", action="store_true",
                        help="also condiff with train.mixed_precision: bf16 (the plain loop stays float32)")
    parser.add_argument("--compile", action="store_true",
                        help="also condiff with train.compile and bf16 (its compile, in the warm-up steps, is printed)")
    parser.add_argument("--child", choices=("condiff", "condiff-bf16", "condiff-compile-bf16", "plain", "matmul"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    from machine import describe

    from condiff.device import pick_device

    device = pick_device(args.device)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batch, device)))
        return

    flops = step_flops(args.batch)
    matmul = in_subprocess("matmul", args.steps, args.batch, device)
    kinds = ("condiff", "plain") + ("condiff-bf16",) * args.bf16 + ("condiff-compile-bf16",) * args.compile
    results = {kind: in_subprocess(kind, args.steps, args.batch, device) for kind in kinds}
    machine = describe(device)
    print(f"{machine}\n{args.steps} steps of {args.batch} images after {WARMUP_STEPS} untimed ones, UNet of "
          f"{RECIPE.name}; one step = {flops / 1e9:.1f} GFLOP")
    print(f"{'':20} {'img/s':>8} {'GFLOP/s':>9} {'% of matmul':>12} {'peak RSS MB':>12} {'peak GPU MB':>12}")
    for kind, result in results.items():
        result["img_per_s"] = result["images"] / result["seconds"]
        result["gflops"] = flops * args.steps / result["seconds"] / 1e9
        gpu = f"{result['peak_gpu_mb']:12.0f}" if result["peak_gpu_mb"] is not None else f"{'-':>12}"
        print(f"{kind:20} {result['img_per_s']:8.1f} {result['gflops']:9.1f} "
              f"{100 * result['gflops'] / matmul['gflops']:11.0f}% {result['peak_rss_mb']:12.0f} {gpu}")
    print(f"{'matmul':20} {'':8} {matmul['gflops']:9.1f} {'100%':>12}   (float32, {matmul['size']}²)")
    ratio = results["condiff"]["img_per_s"] / results["plain"]["img_per_s"]
    print(f"condiff / plain diffusers loop: {ratio:.2f}x the images per second")
    if args.bf16:
        bf16_ratio = results["condiff-bf16"]["img_per_s"] / results["plain"]["img_per_s"]
        print(f"condiff with train.mixed_precision: bf16 / plain diffusers loop (float32): {bf16_ratio:.2f}x")
    if args.compile:
        compiled = results["condiff-compile-bf16"]
        compiled_ratio = compiled["img_per_s"] / results["plain"]["img_per_s"]
        # The compile: the warm-up steps' time beyond those of the same loop uncompiled.
        uncompiled = results["condiff-bf16" if args.bf16 else "condiff"]
        compiled["compile_s"] = compiled["warmup_s"] - uncompiled["warmup_s"]
        saved_per_step = batch_seconds(results["plain"], args.batch) - batch_seconds(compiled, args.batch)
        pays_after = compiled["compile_s"] / saved_per_step if saved_per_step > 0 else None
        compiled["pays_after_steps"] = pays_after
        print(f"condiff with train.compile and bf16 / plain diffusers loop (float32): {compiled_ratio:.2f}x after a "
              f"cold compile of {compiled['compile_s']:.0f} s"
              + (f", which pays for itself after {pays_after:.0f} steps" if pays_after is not None else
                 ", which never pays"))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "device": device, "steps": args.steps,
                                               "warmup_steps": WARMUP_STEPS,
                                               "batch": args.batch, "step_gflop": flops / 1e9,
                                               "matmul_gflops": matmul["gflops"], "matmul_size": matmul["size"],
                                               "ratio": ratio, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
