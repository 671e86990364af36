"""Samplers side by side: time per image and Fréchet distance, on one model in one run.

    python benchmarks/bench_sampling.py [--model DIR] [--num 500] [--repeats 1] [--samplers dpm-20 ...]
        [--device cuda] [--json FILE]

DDPM with all its steps is the reference; DDIM and DPM-Solver++ trade steps for speed. Each sampler
draws the same number of images from the same seeds, scored on the Nouns feature network against
held-out Nouns. With --repeats R each sampler draws R disjoint sets of images (seeds 0, num, 2·num, …),
and its FD is their mean, with the spread beside it, so a close call is not decided by one draw.
The last line names the fewest steps whose mean FD stays within 10 % of full DDPM's: the default for
`condiff sample`. "flat-area noise" is how much flat areas shimmer
(condiff.evaluation.metrics.flat_area_noise), as sampled and after snapping to the model's palette
(what `--palette auto` gives).
`--samplers` measures only the rows named (KIND-STEPS, or ddpm for all its steps), such
as two candidates for the default over several repeats, where full DDPM would take hours on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import describe

from condiff.config import DEFAULT_PRECISION, PRECISIONS
from condiff.device import pick_device
from condiff.evaluation import metrics
from condiff.evaluation.evaluators import EvalSettings, FeatureSpace, reference_rows
from condiff.evaluation.features import load_feature_net
from condiff.evaluation.held_out import REFERENCE_SEED, held_out_nouns
from condiff.model_folder import load_pipeline
from condiff.palette import snap_to_palette
from condiff.sampling import SAMPLERS as KINDS
from condiff.sampling import generate, make_sampler
from condiff.tasks import UNCONDITIONAL

SAMPLERS = [("ddpm", None), ("ddim", 50), ("dpm", 50), ("dpm", 25), ("dpm", 20), ("dpm", 15), ("dpm", 12), ("dpm", 10),
            ("dpm-logsnr", 25), ("dpm-logsnr", 20), ("dpm-logsnr", 15), ("dpm-logsnr", 10)]


def sampler_row(text: str) -> tuple[str, int | None]:
    """`--samplers` row: KIND-STEPS (dpm-logsnr-20), or ddpm alone for all its steps."""
    if text == "ddpm":
        return "ddpm", None
    kind, _, steps = text.rpartition("-")
    if kind not in KINDS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write KIND-STEPS with KIND one of {', '.join(KINDS)} "
                                         "(e.g. dpm-20), or ddpm for all its steps")
    return kind, int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default: the shipped unconditional model")
    parser.add_argument("--num", type=int, default=500, help="images per set")
    parser.add_argument("--repeats", type=int, default=1, help="disjoint sets of images per sampler")
    parser.add_argument("--samplers", nargs="+", type=sampler_row, metavar="KIND-STEPS",
                        help="only these rows, e.g. dpm-20 dpm-logsnr-20 (default: every row of SAMPLERS)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="number type the UNet computes in, as condiff sample --precision")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = pick_device(args.device)
    model = UNCONDITIONAL.resolve_model(args.model)
    pipeline = load_pipeline(model)
    unet, scheduler, denoiser = pipeline.unet.to(device).eval(), pipeline.scheduler, pipeline.denoiser
    if args.precision == "bfloat16":
        unet.bfloat16()
    palette = denoiser.palette
    net = load_feature_net()
    machine = describe(device)
    print(f"{machine}\n{model}: {args.repeats} x {args.num} images per sampler, {args.num} in one batch, "
          f"UNet in {args.precision}")
    space_images = held_out_nouns(args.num, REFERENCE_SEED, unet.config.sample_size)
    space = FeatureSpace(net, space_images)
    references = reference_rows(space, EvalSettings(num=args.num))
    real_flat_area_noise = metrics.flat_area_noise(space_images)
    print("references: " + ", ".join(f"{row.name} FD {row.metrics['FD']:.2f}" for row in references)
          + f"; held-out Nouns' flat-area noise {real_flat_area_noise:.2f}")
    # warm-up: first-call costs stay out of the times
    generate(denoiser, unet, make_sampler(scheduler, "dpm", 2), 8, 2)
    results = []
    for kind, steps in args.samplers or SAMPLERS:
        steps = steps or scheduler.config.num_train_timesteps
        seconds, scores = 0.0, []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            sampler = make_sampler(scheduler, kind, steps)
            samples = generate(denoiser, unet, sampler, args.num, steps,
                               seed=repeat * args.num).images  # returned on CPU
            seconds += time.perf_counter() - start  # sampling only; scoring is outside the clock
            snapped = snap_to_palette(samples, palette) if palette is not None else samples  # what --palette auto gives
            scores.append({**space.scores(samples, parts=True),  # its "flat-area noise" is as sampled
                           "flat-area noise snapped": metrics.flat_area_noise(snapped)})
        result = {"sampler": f"{kind}-{steps}", "ms_per_image": 1000 * seconds / (args.repeats * args.num),
                  **{key: sum(s[key] for s in scores) / len(scores) for key in scores[0]},
                  "FD_per_set": [s["FD"] for s in scores]}
        results.append(result)
        spread = f" (spread {max(result['FD_per_set']) - min(result['FD_per_set']):6.2f})" if args.repeats > 1 else ""
        print(f"{result['sampler']:14} {result['ms_per_image']:9.2f} ms/image   FD {result['FD']:7.2f}{spread}   "
              f"KID {result['KID']:.4f}   glasses ok {result['glasses ok']:.2f}   flat-area noise "
              f"{result['flat-area noise']:.2f} ({result['flat-area noise snapped']:.2f} snapped)", flush=True)
    fewest = None
    if results[0]["sampler"].startswith("ddpm-"):  # the rows are measured against full DDPM when it ran
        full = results[0]["FD"]
        good = [r for r in results[1:] if r["FD"] <= 1.1 * full]
        fewest = min(good, key=lambda r: int(r["sampler"].rsplit("-", 1)[1])) if good else None
    if fewest:
        speedup = results[0]["ms_per_image"] / fewest["ms_per_image"]
        print(f"fewest steps within 10 % of full DDPM's FD ({full:.2f}): {fewest['sampler']} "
              f"(FD {fewest['FD']:.2f}, {speedup:.0f}x faster)")
    if args.json:
        summary = {"machine": machine, "device": device, "model": model, "precision": args.precision,
                   "num": args.num, "repeats": args.repeats,
                   "results": results,
                   "references": {row.name: row.metrics["FD"] for row in references},
                   "held_out_flat_area_noise": real_flat_area_noise,
                   "fewest_within_10pct": fewest and fewest["sampler"]}
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
