"""Training levers a plain loop does not pull, each measured against the eager float32 step on one UNet.

    python benchmarks/bench_training_levers.py [--batch 64] [--steps 10] [--device cuda] [--json FILE]

One training step of recipes/unconditional.yaml's UNet (forward, loss, backward, AdamW) on random data: eager
float32, then each lever alone and combined: channels_last memory format, torch.compile (inductor, on the CPU
too), bfloat16 autocast, and diffusers' matmul attention processor in place of torch's fused attention
(condiff.model.use_matmul_attention, which the trainer uses on a CPU). Each lever runs in its own process (a
compiled graph or a changed memory format must not leak into the next row). Prints seconds per step after two
warm-up steps, the ratio to eager float32, the warm-up time (compilation happens there), and the steps a
training must last for the lever to pay back its warm-up. This isolates the UNet step;
bench_training_throughput.py measures whole loops.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_training_throughput import unet_and_scheduler
from machine import add_run_arguments, describe, synchronize

LEVERS = ("eager", "channels_last", "compile", "bf16", "compile+bf16", "channels_last+bf16",
          "channels_last+compile+bf16", "matmul_attention", "matmul_attention+bf16", "matmul_attention+compile+bf16")


def one_lever(lever: str, batch: int, steps: int, device: str) -> dict:
    import torch

    from condiff.model import use_matmul_attention

    torch.manual_seed(0)
    _, unet, _ = unet_and_scheduler()
    unet.to(device)
    if "channels_last" in lever:
        unet = unet.to(memory_format=torch.channels_last)
    if "matmul_attention" in lever:
        use_matmul_attention(unet)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    model = torch.compile(unet) if "compile" in lever else unet
    images = torch.randn(batch, 3, unet.config.sample_size, unet.config.sample_size, device=device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    def step() -> None:
        timesteps = torch.randint(0, 1000, (batch,), device=device)
        noise = torch.randn_like(images)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled="bf16" in lever):
            output = model(images, timesteps).sample
        torch.nn.functional.mse_loss(output.float(), noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(2):
        step()
    synchronize(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return {"warmup_s": warmup, "step_s": (time.perf_counter() - start) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, steps=10)
    parser.add_argument("--child", choices=LEVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from condiff.device import pick_device

    device = pick_device(args.device)
    if args.child:
        print(json.dumps(one_lever(args.child, args.batch, args.steps, device)))
        return
    results = {}
    for lever in LEVERS:
        output = subprocess.run([sys.executable, __file__, "--child", lever, "--batch", str(args.batch), "--steps",
                                 str(args.steps), "--device", device], check=True, capture_output=True, text=True)
        results[lever] = json.loads(output.stdout.strip().splitlines()[-1])
    eager = results["eager"]
    machine = describe(device)
    print(f"{machine}\none UNet training step of {args.batch} images, mean of {args.steps} after 2 warm-up steps")
    print(f"{'':14} {'s/step':>8} {'x eager':>8} {'warm-up s':>10} {'pays after':>12}")
    for lever, result in results.items():
        result["speedup"] = eager["step_s"] / result["step_s"]
        saved = eager["step_s"] - result["step_s"]
        extra = result["warmup_s"] - eager["warmup_s"]
        result["pays_after_steps"] = (max(extra, 0.0) / saved) if saved > 0 else None
        pays = ("-" if lever == "eager" else "never" if result["pays_after_steps"] is None
                else f"{result['pays_after_steps']:.0f} steps")
        print(f"{lever:14} {result['step_s']:8.3f} {result['speedup']:7.2f}x {result['warmup_s']:10.1f} {pays:>12}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "device": device, "batch": args.batch,
                                               "steps": args.steps, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
