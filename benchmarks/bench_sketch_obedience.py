"""Does a sketch2img model follow drawings? Several model folders side by side on the same held-out
drawings, with `condiff eval sketch2img`'s measurements (condiff.evaluation.drawings).

    python benchmarks/bench_sketch_obedience.py MODEL [MODEL ...] [--num 200] [--guidance 1]
        [--styles outlines simple wobbly] [--silhouette auto off]

Prints per model, silhouette mode (condiff.steering.silhouette; "auto" steers only models whose sketch has `fill`)
and style the silhouette IoU, edge F1 and FD, then the reference rows once (the drawn
Noun: the ceiling; a random Noun: chance; the mean image), all from the same Nouns and seeds, and per
style the silhouette IoU of the drawing's own filled shapes (sketch `fill`): what the drawing pins down. The
variants in docs/benchmarks.md ("Sketch2img that follows a drawing") were chosen by this table.
"""

from __future__ import annotations

import argparse
import time

from condiff.evaluation.drawings import STYLES
from condiff.evaluation.evaluators import EvalSettings
from condiff.evaluation.features import load_feature_net
from condiff.steering.silhouette import SILHOUETTE_MODES
from condiff.tasks import SKETCH2IMG

COLUMNS = ("silhouette IoU", "edge F1", "FD")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="sketch2img model folders")
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=["outlines", "simple", "wobbly"])
    parser.add_argument("--silhouette", nargs="+", choices=SILHOUETTE_MODES, default=["auto"])
    args = parser.parse_args()
    net = load_feature_net()
    print(f"{args.num} held-out Nouns, guidance {args.guidance}")
    print(f"{'model, silhouette, style':72s}" + "".join(f"{c:>16s}" for c in COLUMNS))
    references = []
    for model in args.models:
        for mode in args.silhouette:
            start = time.perf_counter()
            settings = EvalSettings(num=args.num, guidance=args.guidance, styles=tuple(args.styles),
                                    steering={"silhouette": mode})
            report = SKETCH2IMG.evaluate(model, settings, net)
            for row in report.rows:
                if row.name.startswith("model, "):
                    name = f"{model}, {mode}, {row.name.removeprefix('model, ')}"
                    print(f"{name:72s}" + "".join(f"{row.metrics[c]:16.4f}" for c in COLUMNS), flush=True)
            references = [row for row in report.rows if not row.name.startswith("model, ")]
            print(f"  ({settings.scheduler}-{settings.steps}, {time.perf_counter() - start:.0f} s)")
    print_drawing_rows(args.num, args.styles)
    for row in references:
        print(f"{row.name:72s}" + "".join(f"{row.metrics[c]:16.4f}" for c in COLUMNS))


def print_drawing_rows(num: int, styles: list[str]) -> None:
    """Per style, the silhouette IoU of the shapes the drawings enclose, filled as a user's drawing is."""
    import torch

    from condiff.conditions.sketch import SketchCondition, foreground
    from condiff.evaluation.drawings import drawings, held_out_masks, mask_iou
    from condiff.evaluation.held_out import INPUT_SEED, held_out_nouns
    from condiff.steering.silhouette import FIGURE_CONTRAST

    truth, masks = held_out_nouns(num, INPUT_SEED), held_out_masks(num, INPUT_SEED)
    figure, encoder = foreground(truth, FIGURE_CONTRAST), SketchCondition(fill=True)
    for style in styles:
        shapes = torch.cat([encoder.encode_input(image, truth.shape[-1]) for image in drawings(style, truth, masks)])
        print(f"{'the drawing, filled (' + style + ')':72s}{mask_iou(shapes[:, 1] > 0, figure):16.4f}")


if __name__ == "__main__":
    main()
