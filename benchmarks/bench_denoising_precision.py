"""Denoising precision: how close to the exact 8-bit colours a model brings a real image back.

    python benchmarks/bench_denoising_precision.py [MODEL_OR_CHECKPOINT ...] [--timesteps 5 20 50 100 200 400]
        [--num 64] [--samplers dpm:20 dpm:50 ddim:100] [--json FILE]

Issue 14 asks for samples whose pixels are on the palette *before* any snapping. A sample's last
sampler step is the model's estimate of the clean image from a slightly noisy one, so that estimate
must be exact to half a level. This measures it directly: held-out Nouns are noised at each timestep
(fixed noise), and the model's predicted clean image is compared with the truth, pixel by pixel in
8-bit levels. The "no denoising" row is x_t / sqrt(alpha_bar), the noisy image itself rescaled:
what a model that had learned nothing at that timestep would give. With `--samplers`, samples drawn
from the same model are scored the same way against the palette (how much the sampler's ending can do).

Each argument is a model folder (default: the shipped unconditional model) or a training checkpoint
folder (RUN/checkpoints/step-N, scored with its EMA weights as bench_time_to_quality.py does); a palette
head's (condiff.palette_head) clean image is its expected colour.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_time_to_quality import checkpoint_unet, levels_off
from machine import describe

from condiff.evaluation.evaluators import held_out_nouns
from condiff.images import to_uint8
from condiff.model import build_scheduler
from condiff.model_folder import load_pipeline
from condiff.palette import from_hex
from condiff.palette_head import PaletteDenoiser
from condiff.sampling import SAMPLERS, generate, make_sampler, predict_x0
from condiff.tasks import TASKS

SEED = 4321  # held-out Nouns and their noise: not the eval's reference or input seeds


def load(source: Path):
    """(denoiser, training scheduler, self-conditioned) of a model folder or a training checkpoint: its UNet,
    or a palette head's UNet wrapped so that it outputs in the scheduler's prediction type."""
    if (source / "model.safetensors").is_file():
        run = source.parent.parent
        unet, _, recipe, head = checkpoint_unet(run, source)
        scheduler, self_condition = build_scheduler(recipe.scheduler), recipe.model.self_condition
    else:
        pipeline = load_pipeline(source)
        unet, scheduler, head = pipeline.unet.eval(), pipeline.scheduler, pipeline.head
        self_condition = pipeline.config.get("self_condition", False)
    return (unet if head is None else PaletteDenoiser(unet, scheduler, head)), scheduler, self_condition


def precision(estimates: torch.Tensor, truth: torch.Tensor, palette) -> dict[str, float]:
    """Share of pixels exactly the true colour, and the distance to the palette (levels_off)."""
    same = (torch.from_numpy(to_uint8(estimates)) == torch.from_numpy(to_uint8(truth))).all(dim=-1)
    return {"exact": float(same.float().mean()), **levels_off(estimates, palette)}


def denoising_rows(unet, scheduler, truth: torch.Tensor, timesteps: list[int], palette,
                   self_condition: bool) -> list[dict]:
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(SEED))
    rows = []
    for t in timesteps:
        alpha_bar = scheduler.alphas_cumprod[t]
        noisy = alpha_bar.sqrt() * truth + (1 - alpha_bar).sqrt() * noise
        model_input = noisy
        if self_condition:  # the first step's input: no estimate yet
            model_input = torch.cat([noisy, torch.zeros_like(noisy)], dim=1)
        with torch.no_grad():
            estimate = predict_x0(scheduler, unet(model_input, t).sample.float(), noisy, t)
        rows.append({"t": t, "noise": float((1 - alpha_bar).sqrt()),
                     "model": precision(estimate, truth, palette),
                     "no denoising": precision((noisy / alpha_bar.sqrt()).clamp(-1, 1), truth, palette)})
    return rows


def sampler_rows(unet, scheduler, specs: list[str], num: int, palette, self_condition: bool) -> list[dict]:
    rows = []
    for spec in specs:
        kind, steps = spec.split(":")
        start = time.perf_counter()
        samples = generate(unet, make_sampler(scheduler, kind, int(steps)), num, int(steps), seed=0,
                           self_condition=self_condition).images
        rows.append({"sampler": spec, "seconds": time.perf_counter() - start, **levels_off(samples, palette)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=[str(TASKS["unconditional"].shipped_folder)])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[5, 20, 50, 100, 200, 400])
    parser.add_argument("--num", type=int, default=64, help="held-out Nouns (and samples) per model")
    parser.add_argument("--samplers", nargs="*", default=[], metavar="KIND:STEPS",
                        help=f"also score samples of these samplers ({', '.join(SAMPLERS)}), e.g. dpm:20 ddpm:1000")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    palette = from_hex(json.loads((TASKS["unconditional"].shipped_folder / "model_index.json").read_text())["palette"])
    truth = held_out_nouns(args.num, SEED)
    results = {"machine": describe("cpu"), "num": args.num, "models": []}
    for source in map(Path, args.models):
        unet, scheduler, self_condition = load(source)
        rows = denoising_rows(unet, scheduler, truth, args.timesteps, palette, self_condition)
        print(f"\n{source}: the predicted clean image of {args.num} held-out Nouns noised at t")
        print(f"{'t':>5} {'noise':>6} | {'exact':>7} {'within 2':>8} {'median off':>10} | no denoising: "
              f"{'exact':>7} {'within 2':>8} {'median off':>10}")
        for row in rows:
            model, plain = row["model"], row["no denoising"]
            print(f"{row['t']:>5} {row['noise']:>6.3f} | {model['exact']:>7.1%} {model['within 2 levels']:>8.1%} "
                  f"{model['median levels off']:>10g} |               {plain['exact']:>7.1%} "
                  f"{plain['within 2 levels']:>8.1%} {plain['median levels off']:>10g}", flush=True)
        samples = sampler_rows(unet, scheduler, args.samplers, args.num, palette, self_condition)
        for row in samples:
            print(f"samples, {row['sampler']}: on palette {row['on palette']:.2%}, within 2 levels "
                  f"{row['within 2 levels']:.1%}, median {row['median levels off']:g} levels off "
                  f"({row['seconds']:.0f} s)", flush=True)
        results["models"].append({"model": str(source), "denoising": rows, "samples": samples})
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
