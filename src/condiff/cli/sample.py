"""`condiff sample --model DIR`: a sample grid, or one PNG per image (`--out-dir`), and a denoising GIF."""

from __future__ import annotations

import argparse

from condiff.cli.common import MAX_BATCH, add_palette_option, add_sampler_options

MAX_FILES = 100_000  # images one --out-dir run may write


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate images with a trained model",
        description="Generate a grid of samples; --gif also writes the reverse process frame by frame "
                    "(noisy image x_t beside the predicted clean image).",
    )
    parser.add_argument("--model", help="model folder written by `condiff train` (default: the shipped Nouns model)")
    parser.add_argument("--num", type=int, default=16, help="number of images (default: 16)")
    add_sampler_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i (default: 0)")
    add_palette_option(parser)
    parser.add_argument("--out", help="grid PNG to write (default: samples.png, unless --out-dir is given)")
    parser.add_argument("--out-dir", help="also or instead: one PNG per image at the model's resolution, "
                                          "00000.png, 00001.png, ... in this new folder (what FID tools read); "
                                          f"up to {MAX_FILES} images, sampled {MAX_BATCH} at a time")
    parser.add_argument("--gif", help="also write the denoising animation to this GIF")
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling (default: 4)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_BATCH, MAX_SCALE, check_output_path, check_range, check_seed, check_steps

    check_range("--num", args.num, 1, MAX_FILES if args.out_dir and not args.out else MAX_BATCH,
                "one batch for a grid; --out-dir alone samples in batches")
    check_steps(args.steps)
    check_seed(args.seed)
    check_range("--scale", args.scale, 1, MAX_SCALE)
    out = args.out or (None if args.out_dir else "samples.png")
    if out:
        check_output_path(out, (".png",))
    if args.out_dir:
        check_out_dir(args.out_dir)
    if args.gif:
        check_output_path(args.gif, (".gif",))

    from condiff.device import pick_device
    from condiff.images import save_image_atomic
    from condiff.tasks import UNCONDITIONAL
    from condiff.visualize import make_grid, save_gif

    pipeline = UNCONDITIONAL.load(args.model, pick_device(args.device), args.scheduler, args.steps)
    if args.out_dir and not out and not args.gif:
        write_files(pipeline, args)
        return
    result = UNCONDITIONAL.run(pipeline, num=args.num, steps=args.steps, seed=args.seed, record=bool(args.gif),
                               palette=args.palette,
                               output_type="latent")
    if out:
        save_image_atomic(make_grid(result.images, scale=args.scale), out)
        print(f"condiff: wrote {args.num} samples to {out}")
    if args.out_dir:
        write_files(pipeline, args, result.images)
    if args.gif:
        written = save_gif(result.trajectory.animation_frames(scale=args.scale), args.gif)
        print(f"condiff: wrote the denoising animation ({written} frames) to {args.gif}")


def check_out_dir(folder: str) -> None:
    """A new or empty folder, checked before any work: files already there are never replaced."""
    from pathlib import Path

    from condiff.errors import CondiffError
    from condiff.images import check_writable

    path = Path(folder)
    check_writable(path / "00000.png")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CondiffError(f"--out-dir {folder}: already exists and is not an empty folder; choose a new one")


def write_files(pipeline, args: argparse.Namespace, images=None) -> None:
    """One PNG per image, named by its index (image i uses seed + i, so batches give the same images)."""
    from pathlib import Path

    from condiff.images import save_image_atomic, to_pil_images
    from condiff.tasks import UNCONDITIONAL

    folder, digits = Path(args.out_dir), max(5, len(str(args.num - 1)))
    pipeline.set_progress_bar_config(disable=args.num > MAX_BATCH)  # a bar per batch would scroll
    for start in range(0, args.num, MAX_BATCH):
        count = min(MAX_BATCH, args.num - start)
        batch = images[start:start + count] if images is not None else UNCONDITIONAL.run(
            pipeline, num=count, steps=args.steps, seed=args.seed + start, output_type="latent",
            palette=args.palette).images
        for offset, picture in enumerate(to_pil_images(batch)):
            save_image_atomic(picture, folder / f"{start + offset:0{digits}d}.png")
    print(f"condiff: wrote {args.num} images to {folder}/")
