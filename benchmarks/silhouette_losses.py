"""Where a sketch2img model's network loses the drawn silhouette, on held-out Nouns: inside the drawn shapes
(figure pixels painted like the background) or outside them (background pixels painted as figure).

    python benchmarks/silhouette_losses.py outputs/sketch2img-x0 [--num 60] [--styles outlines wobbly]

For each drawing style it prints the silhouette IoU of the network alone (every sampling-time step off,
the default sampler) against the true Nouns, the drawing's filled shapes against the truth (what keeping
them gives), the network's figure against those shapes, and the share of all pixels it misses inside the
shapes and adds outside them. Needs a model trained with the sketch's `fill`.
"""

from __future__ import annotations

import argparse

import torch

import condiff.tasks  # noqa: F401  (registers the built-in tasks)
from condiff.conditions.sketch import foreground
from condiff.evaluation import drawings as dr
from condiff.evaluation import evaluators as ev
from condiff.evaluation.held_out import INPUT_SEED, held_out_nouns
from condiff.steering.silhouette import FIGURE_CONTRAST
from condiff.tasks.base import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--num", type=int, default=60)
    parser.add_argument("--styles", nargs="+", default=["outlines", "wobbly"], choices=dr.STYLES)
    args = parser.parse_args()

    task = TASKS["sketch2img"]
    settings = ev.EvalSettings(num=args.num, steering=dict(ev.STEERING_OFF))
    pipeline = ev.load_measured(task, args.model, settings)
    encoder = task.encoder(pipeline)
    truth = held_out_nouns(args.num, INPUT_SEED, pipeline.resolution)
    masks = dr.held_out_masks(args.num, INPUT_SEED)
    true_figure = foreground(truth, FIGURE_CONTRAST)
    for style in args.styles:
        drawn = dr.drawings(style, truth, masks, seed=settings.seed)
        channels = torch.cat([encoder.encode_input(image, pipeline.resolution) for image in drawn])
        shapes = encoder.figure(channels)
        if shapes is None:
            parser.error(f"{args.model}: its sketch has no fill channel, so there are no drawn shapes to compare")
        shapes = shapes[:, 0]
        figure = foreground(ev.task_outputs(task, pipeline, channels, settings), FIGURE_CONTRAST)
        missed, added = (~figure & shapes).float().mean(), (figure & ~shapes).float().mean()
        print(f"{style}: silhouette IoU {dr.mask_iou(figure, true_figure):.4f}; the drawn shapes against the truth "
              f"{dr.mask_iou(shapes, true_figure):.4f}; the network's figure against the shapes "
              f"{dr.mask_iou(figure, shapes):.4f}; pixels missed inside the shapes {missed:.2%}, "
              f"added outside them {added:.2%}")


if __name__ == "__main__":
    main()
