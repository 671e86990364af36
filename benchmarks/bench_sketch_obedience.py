"""Does a sketch2img model follow drawings? Several model folders side by side on the same held-out
drawings, with `condiff eval sketch2img`'s measurements (condiff.evaluation.drawings).

    python benchmarks/bench_sketch_obedience.py MODEL [MODEL ...] [--num 200] [--guidance 1]
        [--styles outlines simple wobbly]

Prints per model and style the silhouette IoU, edge F1 and FD, then the reference rows once (the drawn
Noun: the ceiling; a random Noun: chance; the mean image), all from the same Nouns and seeds. The
variants in docs/benchmarks.md ("Sketch2img that follows a drawing") were chosen by this table.
"""

from __future__ import annotations

import argparse
import time

from condiff.evaluation.drawings import STYLES
from condiff.evaluation.evaluators import EvalSettings
from condiff.evaluation.features import load_feature_net
from condiff.tasks import SKETCH2IMG

COLUMNS = ("silhouette IoU", "edge F1", "FD")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="sketch2img model folders")
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=["outlines", "simple", "wobbly"])
    args = parser.parse_args()
    net = load_feature_net()
    settings = EvalSettings(num=args.num, guidance=args.guidance, styles=tuple(args.styles))
    print(f"{args.num} held-out Nouns, {settings.scheduler}-{settings.steps}, guidance {args.guidance}")
    print(f"{'model, style':60s}" + "".join(f"{c:>16s}" for c in COLUMNS))
    references = []
    for model in args.models:
        start = time.perf_counter()
        report = SKETCH2IMG.evaluate(model, settings, net)
        for row in report.rows:
            if row.name.startswith("model, "):
                name = f"{model}, {row.name.removeprefix('model, ')}"
                print(f"{name:60s}" + "".join(f"{row.metrics[c]:16.4f}" for c in COLUMNS), flush=True)
        references = [row for row in report.rows if not row.name.startswith("model, ")]
        print(f"  ({time.perf_counter() - start:.0f} s)")
    for row in references:
        print(f"{row.name:60s}" + "".join(f"{row.metrics[c]:16.4f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
