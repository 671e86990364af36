"""Colorize models side by side, each with the palette snap at several colour spreads.

    python benchmarks/bench_colorize.py [MODEL ...] [--num 300] [--spreads 0.5 1 2 1000] [--guidance 1] [--regions]

Each model (a folder; "" or none: the shipped colorize model) colours the same held-out gray
Nouns once, with the same seeds. Its own colours (`--palette off`) are then snapped to its palette by the
pipeline's own steering steps (condiff.steering: the palette snap, then the kept lightness of the gray
input), once per COLOR_SPREAD: how far the model's colour is
taken to stray when colours of one lightness compete (1000: their frequencies alone choose). The table
gives `condiff eval colorize`'s measures for each, so COLOR_SPREAD and the shipped model are chosen
from one run (docs/benchmarks.md, "Colorize: a better model of colour, not yet better outputs").
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from condiff import palette
from condiff.evaluation import metrics
from condiff.evaluation.evaluators import (
    EvalSettings,
    gray_file_channels,
    load_measured,
    model_space,
    part_colours_exact,
    task_outputs,
    visible_parts,
)
from condiff.evaluation.features import load_feature_net
from condiff.evaluation.held_out import INPUT_SEED, held_out_labels, held_out_nouns
from condiff.steering import OPTIONS, check_modes
from condiff.steering.base import context_for, finished
from condiff.tasks import COLORIZE

COLUMNS = ("PSNR", "body exact", "glasses exact", "body right", "glasses right", "FD")


def region_means(images: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """Each 4-connected region of one 8-bit gray level takes its mean colour: snapping then gives the
    whole region one colour, chosen from the model's colour there on average."""
    import numpy as np
    from scipy import ndimage

    result = images.clone()
    levels = ((gray[:, 0] + 1) * 127.5).round().to(torch.int64).numpy()
    for i, level in enumerate(levels):
        for value in np.unique(level):
            regions, count = ndimage.label(level == value)
            for region in range(1, count + 1):
                where = torch.from_numpy(regions == region)
                result[i][:, where] = images[i][:, where].mean(dim=1, keepdim=True)
    return result


def finish(pipeline, encoder, images: torch.Tensor, channels: torch.Tensor, palette_mode: str,
           sampler_steps: int) -> torch.Tensor:
    """`images` finished as the pipeline finishes a call with `palette_mode`: the steering steps the gray
    input's `channels` give (its lightness kept), then the model's palette's, in the pipeline's order."""
    modes = check_modes({"palette": palette_mode}, OPTIONS)
    steps = encoder.steering(channels, modes) + pipeline.denoiser.steering(modes)
    return finished(steps, images, context_for(steps, sampler_steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[""], help="run folders (default: the shipped model)")
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--spreads", nargs="+", type=float, default=[0.5, 1.0, 2.0, 1000.0])
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--regions", action="store_true",
                        help="also snap each region of one gray level to one colour, chosen by its mean colour")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.num} held-out Nouns, guidance {args.guidance}")
    net = load_feature_net()
    settings = EvalSettings(num=args.num, guidance=args.guidance, steering={"palette": "off"})
    labels = held_out_labels(args.num, INPUT_SEED)
    visible = visible_parts(args.num, INPUT_SEED, ("body", "glasses"))
    print("| model | snap | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    shipped_spread = palette.COLOR_SPREAD
    for model in args.models:
        start = time.perf_counter()
        pipeline = load_measured(COLORIZE, model, settings)
        truth = held_out_nouns(args.num, INPUT_SEED, pipeline.resolution)
        encoder = pipeline.conditions.encoders[pipeline.conditions.names.index(COLORIZE.condition)]
        channels = gray_file_channels(encoder, truth)  # the gray files, as eval gives them
        raw = task_outputs(COLORIZE, pipeline, channels, settings)
        gray = channels[:, :1]  # grayscale's first channel is the gray input's lightness
        space = model_space(pipeline, settings, net)
        variants = {"off": finish(pipeline, encoder, raw, channels, "off", settings.steps)}
        averaged = region_means(raw, gray) if args.regions else None
        for spread in args.spreads:
            palette.COLOR_SPREAD = spread
            variants[f"spread {spread:g}"] = finish(pipeline, encoder, raw, channels, "snap", settings.steps)
            if args.regions:
                variants[f"regions, spread {spread:g}"] = finish(pipeline, encoder, averaged, channels, "snap",
                                                                    settings.steps)
        palette.COLOR_SPREAD = shipped_spread
        for name, images in variants.items():
            exact = part_colours_exact(images, truth, visible)
            scores = {"PSNR": metrics.psnr(images, truth), "body exact": exact["body"],
                      "glasses exact": exact["glasses"], **space.scores(images, labels=labels)}
            cells = [f"{scores[c]:.1f}" if c == "FD" else f"{scores[c]:.3f}" for c in COLUMNS]
            print(f"| {model or 'shipped'} | {name} | " + " | ".join(cells) + " |", flush=True)
        print(f"<!-- {model or 'shipped'}: {time.perf_counter() - start:.0f} s -->", flush=True)
    print(f"(the shipped COLOR_SPREAD is {shipped_spread:g})")


if __name__ == "__main__":
    main()
