"""`condiff sample --model DIR`: a sample grid, or one PNG per image (`--out-dir`), and a denoising GIF.

The --out-dir folder is held for the whole run (condiff.folder_lock), and every output is moved into place at
the end: a run that fails or is interrupted writes none, and can simply be run again."""

from __future__ import annotations

import argparse
from pathlib import Path

from condiff.cli.common import (
    MAX_BATCH,
    MAX_SCALE,
    add_sampling_options,
    call_options,
    check_distinct,
    check_output_path,
    check_range,
    check_seed,
    check_steps,
    printable,
)

MAX_FILES = 100_000  # images one --out-dir run may write


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate images with a trained model",
        description="Generate a grid of samples; --gif also writes the reverse process frame by frame "
                    "(noisy image x_t beside the predicted clean image).",
    )
    parser.add_argument("--model", help="model folder written by `condiff train` (default: the shipped Nouns model)")
    parser.add_argument("--num", type=int, default=16, help="number of images (default: 16)")
    add_sampling_options(parser, conditional=False)
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i (default: 0)")
    parser.add_argument("--out", help="grid PNG to write (default: samples.png, unless --out-dir is given)")
    parser.add_argument("--out-dir", help="also or instead: one PNG per image at the model's resolution, "
                                          "00000.png, 00001.png, ... in this new folder (what FID tools read); "
                                          f"up to {MAX_FILES} images, sampled {MAX_BATCH} at a time")
    parser.add_argument("--gif", help="also write the denoising animation to this GIF")
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling (default: 4)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import contextlib

    check_range("--num", args.num, 1, MAX_FILES if args.out_dir and not args.out and not args.gif else MAX_BATCH,
                "one batch for a grid or a GIF; --out-dir alone samples in batches")
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
    check_distinct([*([(Path(out), "--out")] if out else []), *([(Path(args.gif), "--gif")] if args.gif else []),
                    *((path, "--out-dir") for path in folder_files(args))], inputs=(),
                   fix="choose another --out or --out-dir")

    from condiff.folder_lock import hold_folder

    with contextlib.ExitStack() as held:
        if args.out_dir:
            held.enter_context(hold_folder(Path(args.out_dir), f"--out-dir {args.out_dir}",
                                           fix="choose another --out-dir"))
            check_out_dir(args.out_dir)  # again, now that no other run can write there
        written = sample_files(args, out)
    for line in written:
        print(f"condiff: {printable(line)}")


def sample_files(args: argparse.Namespace, out: str | None) -> list[str]:
    """Sample and write every output at once at the end (none on an error or an interrupt); what was written."""
    from condiff.device import pick_device
    from condiff.images import StagedFiles
    from condiff.tasks import UNCONDITIONAL
    from condiff.visualize import make_grid, save_gif, trajectory_frames

    pipeline = UNCONDITIONAL.load(args.model, pick_device(args.device), args.scheduler, args.steps, args.precision)
    written = []
    with StagedFiles() as staged:
        if args.out_dir and not out and not args.gif:
            written.append(write_files(staged, pipeline, args))
        else:
            result = UNCONDITIONAL.run(pipeline, num=args.num, steps=args.steps, seed=args.seed,
                                       record=bool(args.gif), **call_options(args), output_type="latent")
            if out:
                staged.save_image(make_grid(result.images, scale=args.scale), out)
                written.append(f"wrote {args.num} samples to {out}")
            if args.out_dir:
                written.append(write_files(staged, pipeline, args, result.images))
            if args.gif:
                frames = trajectory_frames(result.trajectory, scale=args.scale)
                count = []
                staged.write(args.gif, lambda tmp: count.append(save_gif(frames, tmp)), suffix=".gif")
                written.append(f"wrote the denoising animation ({count[0]} frames) to {args.gif}")
        staged.commit()
    return written


def check_out_dir(folder: str) -> None:
    """A new or empty folder, checked before any work: files already there are never replaced. The lock file
    and temporary files a killed run left behind do not count."""
    from condiff.errors import CondiffError
    from condiff.folder_lock import is_lock_file
    from condiff.images import check_writable, is_temp_file

    path = Path(folder)
    check_writable(path / "00000.png")
    if path.exists() and (not path.is_dir() or any(not is_lock_file(entry.name) and not is_temp_file(entry.name)
                                                   for entry in path.iterdir())):
        raise CondiffError(f"--out-dir {folder}: already exists and is not an empty folder; choose a new one")


def folder_files(args: argparse.Namespace) -> list[Path]:
    """The --out-dir files, image i as index i with at least 5 digits: 00000.png, 00001.png, ..."""
    if not args.out_dir:
        return []
    folder, digits = Path(args.out_dir), max(5, len(str(args.num - 1)))
    return [folder / f"{index:0{digits}d}.png" for index in range(args.num)]


def write_files(staged, pipeline, args: argparse.Namespace, images=None) -> str:
    """One PNG per image, named by its index (image i uses seed + i, so batches give the same images)."""
    from condiff.images import to_pil_images
    from condiff.tasks import UNCONDITIONAL

    paths = folder_files(args)
    pipeline.set_progress_bar_config(disable=args.num > MAX_BATCH)  # a bar per batch would scroll
    for start in range(0, args.num, MAX_BATCH):
        count = min(MAX_BATCH, args.num - start)
        batch = images[start:start + count] if images is not None else UNCONDITIONAL.run(
            pipeline, num=count, steps=args.steps, seed=args.seed + start, output_type="latent",
            **call_options(args)).images
        for path, picture in zip(paths[start:start + count], to_pil_images(batch), strict=True):
            staged.save_image(picture, path)
    return f"wrote {args.num} images to {Path(args.out_dir)}/"
