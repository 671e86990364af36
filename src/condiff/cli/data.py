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
    preview.set_defaults(run=run_preview)

    export = actions.add_parser(
        "export", help="write a dataset as an image folder or a datasets dataset",
        description="Write images (with a caption in `text` and, for Nouns, the part labels). "
                    "--format folder writes PNGs and metadata.jsonl (loadable with datasets' imagefolder); "
                    "--format datasets writes a save_to_disk dataset with columns image and text.")
    export.add_argument("source", help="'nouns' or any other source")
    export.add_argument("--num", type=int, default=50_000, help="number of images (default: 50000)")
    export.add_argument("--seed", type=int, default=0, help="which Nouns are drawn (default: 0)")
    export.add_argument("--resolution", type=int, default=32, help="image size (default: 32)")
    export.add_argument("--format", choices=("folder", "datasets"), default="folder")
    export.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    export.set_defaults(run=run_export)


def _load(args: argparse.Namespace):
    from condiff.config import recipe_from_dict
    from condiff.data.sources import build_dataset

    config = recipe_from_dict({"data": {"source": args.source, "size": args.num, "seed": args.seed,
                                        "resolution": args.resolution}}, origin="condiff data").data
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
    from condiff.errors import CondiffError

    check_range("--num", args.num, 1, 1_000_000, "one file per image")
    check_seed(args.seed)
    check_range("--resolution", args.resolution, 1, MAX_RESOLUTION)
    from condiff.errors import is_write_failure, write_failure_reason
    from condiff.images import check_writable

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


def _rows(dataset):
    for i in range(len(dataset)):
        item = dataset[i]
        row = {"text": item.get("text", "")}
        if "labels" in item:
            row["labels"] = [int(v) for v in item["labels"]]
        yield i, item["image"], row


def _write_folder(dataset, folder) -> None:
    import json

    from PIL import Image

    digits = len(str(len(dataset) - 1))
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for i, image, row in _rows(dataset):
            name = f"{i:0{digits}d}.png"
            Image.fromarray(image).save(folder / name)
            meta.write(json.dumps({"file_name": name, **row}) + "\n")


def _write_datasets(dataset, folder) -> None:
    import datasets
    from PIL import Image

    def generate():
        for _, image, row in _rows(dataset):
            yield {"image": Image.fromarray(image), **row}

    features = {"image": datasets.Image(), "text": datasets.Value("string")}
    if "labels" in dataset[0]:
        features["labels"] = datasets.Sequence(datasets.Value("int64"))
    built = datasets.Dataset.from_generator(generate, features=datasets.Features(features))
    built.save_to_disk(str(folder))
