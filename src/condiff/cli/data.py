"""`condiff data preview|export SOURCE`: look at a dataset, or write it out as files."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("data", help="preview or export a dataset (built-in Nouns or any source)",
                                   description="Preview or export a dataset.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    preview = actions.add_parser("preview", help="a grid of images from a dataset",
                                 description="Write a grid of the first images of a dataset.")
    preview.add_argument("source", help="'nouns', an image folder, a .parquet file, a save_to_disk folder or a Hub id")
    preview.add_argument("--num", type=int, default=64, help="number of images (default: 64)")
    preview.add_argument("--seed", type=int, default=0, help="which Nouns are drawn (default: 0)")
    preview.add_argument("--resolution", type=int, default=32, help="image size (default: 32)")
    preview.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling (default: 4)")
    preview.add_argument("--out", default="preview.png", help="PNG to write (default: preview.png)")
    add_data_overrides(preview)
    preview.set_defaults(run=run_preview)

    export = actions.add_parser(
        "export", help="write a dataset as an image folder or a datasets dataset",
        description="Write images (with a caption in `text` and, for Nouns, one column per part: "
                    "background, body, accessory, head, glasses). "
                    "--format folder writes PNGs and metadata.jsonl (loadable with datasets' imagefolder); "
                    "--format datasets writes a save_to_disk dataset with columns image, text and the parts as "
                    "ClassLabels (numbers with names); the folder's metadata has the part names.")
    export.add_argument("source", help="'nouns' or any other source")
    export.add_argument("--num", type=int, default=50_000, help="number of images (default: 50000)")
    export.add_argument("--seed", type=int, default=0, help="which Nouns are drawn (default: 0)")
    export.add_argument("--resolution", type=int, default=32, help="image size (default: 32)")
    export.add_argument("--format", choices=("folder", "datasets"), default="folder")
    export.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    add_data_overrides(export)
    export.set_defaults(run=run_export)


def add_data_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                        help="any data setting of a recipe, as for condiff train, e.g. --set data.image_column=img "
                             "--set data.bad_images=skip (repeatable; see docs/train.md)")


def _load(args: argparse.Namespace):
    from condiff.config import apply_overrides, recipe_from_dict
    from condiff.data.sources import build_dataset
    from condiff.errors import RecipeError

    for item in args.overrides:
        if not item.startswith("data."):
            raise RecipeError(f"--set {item.split('=')[0]}: condiff data takes data.* settings only; "
                              "use condiff train for the others")
    values = {"data": {"source": args.source, "size": args.num, "seed": args.seed, "resolution": args.resolution}}
    config = recipe_from_dict(apply_overrides(values, args.overrides),
                              origin="condiff data" + (" (with --set overrides)" if args.overrides else "")).data
    return build_dataset(config)


def run_preview(args: argparse.Namespace) -> None:
    import numpy as np

    from condiff.cli.common import MAX_RESOLUTION, MAX_SCALE, check_grid, check_output_path, check_range, check_seed
    from condiff.images import save_image_atomic
    from condiff.visualize import make_grid

    check_range("--num", args.num, 1, 1024, "one grid")
    check_seed(args.seed)
    check_range("--resolution", args.resolution, 1, MAX_RESOLUTION)
    check_range("--scale", args.scale, 1, MAX_SCALE)
    check_grid(args.num, args.resolution, args.scale)
    check_output_path(args.out, (".png",))
    dataset = _load(args)
    images = np.stack([dataset[i]["image"] for i in range(min(args.num, len(dataset)))])
    save_image_atomic(make_grid(images, scale=args.scale), args.out)
    print(f"condiff: wrote a grid of {len(images)} images to {args.out}")


def run_export(args: argparse.Namespace) -> None:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from condiff.cli.common import MAX_RESOLUTION, check_range, check_seed
    from condiff.errors import CondiffError, is_write_failure, write_failure_reason
    from condiff.images import check_writable

    check_range("--num", args.num, 1, 1_000_000, "one file per image")
    check_seed(args.seed)
    check_range("--resolution", args.resolution, 1, MAX_RESOLUTION)

    out = Path(args.out)
    check_writable(out / "metadata.jsonl")  # first: a name too long cannot even be looked at
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CondiffError(f"{out}: already exists and is not an empty folder; choose a new --out")
    dataset = _load(args)
    # Build next to the destination and rename at the end: no half-written dataset on failure.
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        if args.format == "folder":
            _write_folder(dataset, staging)
        else:
            _write_datasets(dataset, staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except Exception as err:
        if not is_write_failure(err):
            raise
        raise CondiffError(f"{out}: could not write the dataset ({write_failure_reason(err)}); free disk space "
                           "or choose a writable folder") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"condiff: exported {len(dataset)} images to {out} ({args.format})")


def _part_names(dataset) -> dict[str, list[str]]:
    """{part kind: its names} when the items carry Nouns part labels, else {}."""
    if "labels" not in dataset[0]:
        return {}
    from condiff.data.nouns import PART_KINDS, load_art

    return {kind: load_art().part_names[kind] for kind in PART_KINDS}


def _rows(dataset, names: dict[str, list[str]], as_names: bool):
    """(index, image, row): the caption and, for Nouns, one column per part (its name, or its index
    into `names` where the format keeps the names beside the numbers)."""
    for i in range(len(dataset)):
        item = dataset[i]
        row = {"text": item.get("text", "")}
        for (kind, kind_names), label in zip(names.items(), item.get("labels", ()), strict=False):
            row[kind] = kind_names[int(label)] if as_names else int(label)
        yield i, item["image"], row


def _write_folder(dataset, folder) -> None:
    import json

    from PIL import Image

    digits = len(str(len(dataset) - 1))
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for i, image, row in _rows(dataset, _part_names(dataset), as_names=True):
            name = f"{i:0{digits}d}.png"
            Image.fromarray(image).save(folder / name)
            meta.write(json.dumps({"file_name": name, **row}) + "\n")


def _write_datasets(dataset, folder) -> None:
    import datasets
    from PIL import Image

    names = _part_names(dataset)

    def generate():
        for _, image, row in _rows(dataset, names, as_names=False):
            yield {"image": Image.fromarray(image), **row}

    # Each part is a ClassLabel: the numbers train a classifier, .int2str() names them.
    features = {"image": datasets.Image(), "text": datasets.Value("string")}
    features.update({kind: datasets.ClassLabel(names=kind_names) for kind, kind_names in names.items()})
    built = datasets.Dataset.from_generator(generate, features=datasets.Features(features))
    built.save_to_disk(str(folder))
