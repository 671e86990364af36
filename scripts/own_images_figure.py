"""The pictures of docs/own-images.md: held-out images, what the model was given, and its outputs as the
commands run it and with every sampling-time step off, one column per image.

    python scripts/own_images_figure.py colorize outputs/own-colorize data/twemoji docs/images/own-colorize.png
    python scripts/own_images_figure.py sketch2img outputs/own-sketch2img data/twemoji docs/images/own-sketch2img.png

The rows: the truth, the input (the gray file, or a drawing in each style), then the outputs. Made with
`condiff.evaluation` as `condiff eval --data` makes its inputs, so the pictures are of what the numbers measure.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from condiff.evaluation import evaluators as ev
from condiff.evaluation.own_drawings import own_drawings
from condiff.evaluation.own_images import own_images
from condiff.images import save_image_atomic, to_model_tensor
from condiff.tasks import TASKS
from condiff.visualize import make_grid

COLUMNS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("colorize", "sketch2img"))
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args()
    task = TASKS[args.task]
    pipeline = task.load(args.model, "cpu", "dpm", 20)
    unseen = own_images(args.data, args.model, pipeline.resolution, 10_000).truth
    truth = unseen[:: max(1, len(unseen) // COLUMNS)][:COLUMNS]  # spread over the file names
    encoder = task.encoder(pipeline)
    if args.task == "colorize":
        inputs = {"gray file": ev.gray_file_images(truth)}
        channels = {"gray file": ev.gray_file_channels(encoder, truth)}
    else:
        inputs, channels = {}, {}
        for style in ("outlines", "wobbly", "sparse"):
            drawn = own_drawings(style, truth, 0, encoder.config.threshold)
            size = (truth.shape[-1], truth.shape[-2])
            inputs[style] = to_model_tensor(np.stack([np.asarray(d.convert("RGB").resize(size)) for d in drawn]))
            channels[style] = torch.cat([encoder.encode_input(d, pipeline.resolution) for d in drawn])
    rows = [truth]
    for name in inputs:
        rows.append(inputs[name])
        for steering in ({}, ev.STEERING_OFF):
            settings = ev.EvalSettings(steering=steering)
            rows.append(ev.task_outputs(task, pipeline, channels[name], settings))
    save_image_atomic(make_grid(torch.cat(rows), ncols=len(truth), scale=args.scale), args.out)
    print(f"wrote {args.out}: rows truth, then per input: the input, as run, the network alone")


if __name__ == "__main__":
    main()
