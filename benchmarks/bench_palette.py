"""Palette-aware sampling side by side: --palette off, snap (at the end only) and project (pulled over
the last steps, then snapped), on each shipped model, with `condiff eval`'s own measurements.

    python benchmarks/bench_palette.py [--num 300] [--tasks unconditional colorize sketch2img]
        [--fractions 0.15 0.3 0.5] [--spreads 0.5 1 2 1000]

Prints one table per task: a row per palette mode, the projection once per fraction of the steps it
pulls (FD, KID, on palette, the task's own columns), and the reference rows once, all from the same
held-out Nouns and seeds (sketch2img: drawings in the training sketches' style). Colorize, whose gray
input fixes each pixel's lightness, also snaps once per COLOR_SPREAD (how far the model's colour is
taken to stray; 1000: the colours' frequencies alone choose). The default mode and PROJECT_FRACTION
(condiff.steering.palette) and COLOR_SPREAD (condiff.palette) are chosen from these tables
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from condiff import palette
from condiff.evaluation.evaluators import EvalSettings
from condiff.evaluation.features import load_feature_net
from condiff.evaluation.report import Report
from condiff.steering import palette as steering
from condiff.tasks import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.15, 0.3, 0.5])
    parser.add_argument("--spreads", nargs="+", type=float, default=[0.5, 1.0, 2.0, 1000.0])
    args = parser.parse_args()
    net = load_feature_net()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.num} images per set")
    for name in args.tasks:
        task = TASKS[name]
        rows, references = [], []
        spreads = args.spreads if name == "colorize" else [palette.COLOR_SPREAD]
        variants = [("off", None, None), *(("snap", None, spread) for spread in spreads),
                    *(("project", fraction, spreads[0]) for fraction in args.fractions)]
        defaults = steering.PROJECT_FRACTION, palette.COLOR_SPREAD
        for mode, fraction, spread in variants:
            steering.PROJECT_FRACTION, palette.COLOR_SPREAD = fraction or defaults[0], spread or defaults[1]
            start = time.perf_counter()
            settings = EvalSettings(num=args.num, steering={"palette": mode}, styles=("outlines",))
            report = task.evaluate(str(task.shipped_folder), settings, net)
            references = [row for row in report.rows if not row.name.startswith("model")]
            model_row = report.rows[0]
            model_row.name = f"palette {mode}" + (f" {fraction:g}" if fraction else "") + \
                (f" spread {spread:g}" if name == "colorize" and spread else "")
            model_row.note = f"{time.perf_counter() - start:.0f} s"
            rows.append(model_row)
        settings = {k: v for k, v in report.settings.items() if k != "palette"}
        print(Report(name, rows + references, settings, report.notes).table(), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
