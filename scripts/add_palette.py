"""Give a model folder trained before palettes (condiff.palette) the palette of its recipe's data.

    python scripts/add_palette.py src/condiff/models/unconditional recipes/unconditional.yaml

Finds the palette exactly as `condiff train` does at its start (data.palette, data.palette_size of the
recipe) and writes it where the folder records its settings: its denoiser component (denoiser/config.json),
or model_index.json in a folder saved before there was one; the weights are not touched. The shipped
models got their palettes this way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from condiff.config import load_recipe
from condiff.data.sources import build_dataset
from condiff.denoiser import Denoiser
from condiff.model_folder import saved_denoiser
from condiff.palette import palette_config
from condiff.training.from_recipe import data_palette


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder")
    parser.add_argument("recipe", help="the recipe it was trained with")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    found = data_palette(recipe, build_dataset(recipe.data))
    palette = palette_config(found.colors, found.frequencies)
    index_file = args.model / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    if "denoiser" in index:  # the folder's Denoiser records the palette (condiff.denoiser)
        denoiser = Denoiser.from_settings({**saved_denoiser(args.model).config, **palette})
        denoiser.save_pretrained(args.model / "denoiser", safe_serialization=True)
    else:
        index.update(palette)
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.model}: {found.note}")


if __name__ == "__main__":
    main()
