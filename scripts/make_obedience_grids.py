"""Grids for docs/colorize.md, docs/sketch2img.md and docs/sample.md: the shipped models on held-out Nouns
they never saw, the inputs beside the outputs and the truth, with and without the palette.

    python scripts/make_obedience_grids.py [--num 8] [--sketch-before FOLDER]

Writes docs/images/colorize-held-out.png (rows: gray input, --palette off, the default, the true Noun),
docs/images/sketch2img-styles.png (per drawing style: the drawing, the output; last row the true Noun)
and docs/images/palette-{off,snap,project}.png (16 unconditional samples per mode). With
--sketch-before (an earlier sketch2img model folder), also docs/images/sketch2img-before-after.png: per
style never used in training, the drawing, that model's output, the shipped one's with --silhouette off
and the shipped one's as the commands make it; the truth last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from condiff.evaluation.drawings import STYLES, drawings, held_out_masks
from condiff.evaluation.evaluators import gray_file_images
from condiff.evaluation.held_out import INPUT_SEED, held_out_nouns
from condiff.images import to_model_tensor
from condiff.tasks import COLORIZE, SKETCH2IMG, UNCONDITIONAL
from condiff.visualize import make_grid

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def rows_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Rows of images in [-1, 1] (each (N, 3, 32, 32)) as one grid, 4x enlarged."""
    images = torch.cat(rows)
    make_grid(images, ncols=len(rows[0]), scale=4).save(path)
    print(f"wrote {path}")


def drawing_row(drawn: list[Image.Image]) -> torch.Tensor:
    """Drawings shrunk to the models' 32 px for a grid row."""
    return to_model_tensor(np.stack([np.asarray(d.convert("RGB").resize((32, 32), Image.Resampling.BOX))
                                     for d in drawn]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--sketch-before", help="an earlier sketch2img model folder to compare with")
    args = parser.parse_args()
    truth = held_out_nouns(args.num, INPUT_SEED)
    gray = gray_file_images(truth)  # the gray Nouns as 8-bit files, as condiff eval colorize gives them

    pipeline = COLORIZE.load(None, "cpu", "dpm", 20)
    outputs = [COLORIZE.run(pipeline, gray, steps=20, seed=0, output_type="latent", palette=mode).images
               for mode in ("off", "auto")]
    rows_grid([gray, *outputs, truth], OUT / "colorize-held-out.png")

    pipeline = SKETCH2IMG.load(None, "cpu", "dpm", 20)
    masks, rows = held_out_masks(args.num, INPUT_SEED), []
    for style in STYLES:
        drawn = drawings(style, truth, masks)
        rows += [drawing_row(drawn), SKETCH2IMG.run(pipeline, drawn, steps=20, seed=0, output_type="latent").images]
    rows_grid([*rows, truth], OUT / "sketch2img-styles.png")
    if args.sketch_before:
        before = SKETCH2IMG.load(args.sketch_before, "cpu", "dpm", 20)
        rows = []
        for style in ("simple", "wobbly"):
            drawn = drawings(style, truth, masks)
            rows += [drawing_row(drawn)] + [
                SKETCH2IMG.run(model, drawn, steps=20, seed=0, output_type="latent", silhouette=mode).images
                for model, mode in ((before, "auto"), (pipeline, "off"), (pipeline, "auto"))]
        rows_grid([*rows, truth], OUT / "sketch2img-before-after.png")

    pipeline = UNCONDITIONAL.load(None, "cpu", "dpm", 20)
    for mode in ("off", "snap", "project"):
        samples = UNCONDITIONAL.run(pipeline, num=16, steps=20, seed=0, output_type="latent", palette=mode).images
        make_grid(samples, ncols=8, scale=4).save(OUT / f"palette-{mode}.png")


if __name__ == "__main__":
    main()
