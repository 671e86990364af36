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

from condiff.evaluation.held_out import held_out_nouns
from condiff.images import to_uint8
from condiff.model import build_scheduler, predict_x0
from condiff.model_folder import load_pipeline, saved_denoiser
from condiff.palette import from_hex
from condiff.sampling import SAMPLERS, generate, make_sampler
from condiff.tasks import TASKS

SEED = 4321  # held-out Nouns and their noise: not the eval's reference or input seeds


def load(source: Path):
    """(Denoiser, UNet, training scheduler) of a model folder or a training checkpoint."""
    if (source / "model.safetensors").is_file():
        run = source.parent.parent
        denoiser, unet, _, recipe = checkpoint_unet(run, source)
        return denoiser, unet, build_scheduler(recipe.scheduler)
    pipeline = load_pipeline(source)
    return pipeline.denoiser, pipeline.unet.eval(), pipeline.scheduler


def precision(estimates: torch.Tensor, truth: torch.Tensor, palette) -> dict[str, float]:
    """Share of pixels exactly the true colour, and the distance to the palette (levels_off)."""
    same = (torch.from_numpy(to_uint8(estimates)) == torch.from_numpy(to_uint8(truth))).all(dim=-1)
    return {"exact": float(same.float().mean()), **levels_off(estimates, palette)}


def denoising_rows(denoiser, unet, scheduler, truth: torch.Tensor, timesteps: list[int], palette) -> list[dict]:
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(SEED))
    rows = []
    for t in timesteps:
        alpha_bar = scheduler.alphas_cumprod[t]
        noisy = alpha_bar.sqrt() * truth + (1 - alpha_bar).sqrt() * noise
        # a first step's input (a self-conditioned model has no estimate yet)
        model_input = denoiser.model_input(noisy, estimate=denoiser.initial_estimate(noisy))
        with torch.no_grad():
            estimate = predict_x0(scheduler, denoiser.output(unet, scheduler, model_input, t), noisy, t)
        rows.append({"t": t, "noise": float((1 - alpha_bar).sqrt()),
                     "model": precision(estimate, truth, palette),
                     "no denoising": precision((noisy / alpha_bar.sqrt()).clamp(-1, 1), truth, palette)})
    return rows


def sampler_rows(denoiser, unet, scheduler, specs: list[str], num: int, palette) -> list[dict]:
    rows = []
    for spec in specs:
        kind, steps = spec.split(":")
        start = time.perf_counter()
        samples = generate(denoiser, unet, make_sampler(scheduler, kind, int(steps)), num, int(steps), seed=0).images
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
    palette = from_hex(saved_denoiser(TASKS["unconditional"].shipped_folder).config.palette)
    truth = held_out_nouns(args.num, SEED)
    results = {"machine": describe("cpu"), "num": args.num, "models": []}
    for source in map(Path, args.models):
        denoiser, unet, scheduler = load(source)
        rows = denoising_rows(denoiser, unet, scheduler, truth, args.timesteps, palette)
        print(f"\n{source}: the predicted clean image of {args.num} held-out Nouns noised at t")
        print(f"{'t':>5} {'noise':>6} | {'exact':>7} {'within 2':>8} {'median off':>10} | no denoising: "
              f"{'exact':>7} {'within 2':>8} {'median off':>10}")
        for row in rows:
            model, plain = row["model"], row["no denoising"]
            print(f"{row['t']:>5} {row['noise']:>6.3f} | {model['exact']:>7.1%} {model['within 2 levels']:>8.1%} "
                  f"{model['median levels off']:>10g} |               {plain['exact']:>7.1%} "
                  f"{plain['within 2 levels']:>8.1%} {plain['median levels off']:>10g}", flush=True)
        samples = sampler_rows(denoiser, unet, scheduler, args.samplers, args.num, palette)
        for row in samples:
            print(f"samples, {row['sampler']}: on palette {row['on palette']:.2%}, within 2 levels "
                  f"{row['within 2 levels']:.1%}, median {row['median levels off']:g} levels off "
                  f"({row['seconds']:.0f} s)", flush=True)
        results["models"].append({"model": str(source), "denoising": rows, "samples": samples})
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
