"""Sampling throughput: condiff's pipeline against diffusers' `DDPMPipeline`, side by side in one run.

    python benchmarks/bench_sampling_throughput.py [--steps 50] [--batches 16 64] [--repeats 3] [--device cuda]
        [--json FILE]

Both sample with the identical UNet (recipes/unconditional.yaml's shape, with a plain 3-channel output so
that `DDPMPipeline` can run it; its weights do not change the time) and the identical `DDPMScheduler` at
the same number of steps and batch. condiff runs as `condiff sample --scheduler ddpm --steps N` runs it
(`ConditionalDDPMPipeline`, float32 and `--precision bfloat16`); `DDPMPipeline` runs as its documentation
shows, in float32, and inside `torch.autocast(bfloat16)`, what a user could do by hand for the same
arithmetic (a UNet cast to bfloat16 is no choice there: it cannot return its bfloat16 images as numpy).
The rows take turns, `--repeats` times, after one warm-up each; each row's time is its median.
Whether bfloat16's samples are as good as float32's is measured separately, FD over repeats with
`benchmarks/bench_sampling.py --precision bfloat16`.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "unconditional.yaml"


def samplers(steps: int, device: str) -> dict:
    """{row name: function(batch) that samples `batch` images}, every row on one UNet and schedule."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler

    from condiff.conditions.stack import ConditionStack
    from condiff.config import load_recipe
    from condiff.model import build_scheduler, build_unet
    from condiff.pipeline import ConditionalDDPMPipeline

    recipe = load_recipe(str(RECIPE), ["model.palette_head=false"])
    torch.manual_seed(0)
    unet = build_unet(recipe.model, recipe.data.resolution).to(device).eval()
    unet_bf16 = copy.deepcopy(unet).bfloat16()  # what condiff's --precision bfloat16 does to a loaded UNet
    config = build_scheduler(recipe.scheduler).config

    def scheduler():
        return DDPMScheduler.from_config(config)

    condiff = {precision: ConditionalDDPMPipeline(unet=model, scheduler=scheduler(), conditions=ConditionStack())
               for precision, model in (("float32", unet), ("bfloat16", unet_bf16))}
    peer = DDPMPipeline(unet=unet, scheduler=scheduler())
    for pipeline in (*condiff.values(), peer):
        pipeline.set_progress_bar_config(disable=True)

    def ours(precision):
        return lambda batch: condiff[precision](batch_size=batch, num_inference_steps=steps, seed=0,
                                                output_type="pt")

    def theirs(batch):
        return peer(batch_size=batch, num_inference_steps=steps, output_type="np",
                    generator=torch.Generator().manual_seed(0))

    def theirs_autocast(batch):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            return theirs(batch)

    return {"condiff": ours("float32"), "condiff --precision bfloat16": ours("bfloat16"),
            "DDPMPipeline": theirs, "DDPMPipeline in torch.autocast(bfloat16)": theirs_autocast}


def measure(rows: dict, batch: int, repeats: int, device: str) -> dict:
    """{row: median seconds to sample `batch` images}, the rows taking turns after one warm-up each."""
    from machine import synchronize

    times = {name: [] for name in rows}
    for sample in rows.values():
        sample(batch)
    for _ in range(repeats):
        for name, sample in rows.items():
            synchronize(device)
            start = time.perf_counter()
            sample(batch)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="DDPM steps of every row (default: 50)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="images per call (default: 16 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row and batch (default: 3)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from machine import describe

    from condiff.device import pick_device

    device = pick_device(args.device)
    machine = describe(device)
    rows = samplers(args.steps, device)
    print(f"{machine}\nDDPMScheduler, {args.steps} steps, UNet of {RECIPE.name} (3-channel output); "
          f"median of {args.repeats} calls per row")
    results = []
    for batch in args.batches:
        seconds = measure(rows, batch, args.repeats, device)
        base = batch / seconds["DDPMPipeline"]
        print(f"\nbatch {batch}:")
        for name, value in seconds.items():
            rate = batch / value
            print(f"  {name:42} {rate:8.1f} images/s   {rate / base:5.2f}x DDPMPipeline")
            results.append({"batch": batch, "row": name, "seconds": value, "images_per_s": rate,
                            "ratio_to_ddpm_pipeline": rate / base})
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "device": device, "steps": args.steps,
                                               "repeats": args.repeats, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
