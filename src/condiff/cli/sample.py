"""`condiff sample --model DIR`: a sample grid and, optionally, a denoising GIF."""

from __future__ import annotations

import argparse

from condiff.cli.common import add_sampler_options


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
    parser.add_argument("--out", default="samples.png", help="grid PNG to write (default: samples.png)")
    parser.add_argument("--gif", help="also write the denoising animation to this GIF")
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling (default: 4)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_BATCH, MAX_SCALE, check_output_path, check_range, check_seed, check_steps

    check_range("--num", args.num, 1, MAX_BATCH, "sampled in one batch")
    check_steps(args.steps)
    check_seed(args.seed)
    check_range("--scale", args.scale, 1, MAX_SCALE)
    check_output_path(args.out, (".png",))
    if args.gif:
        check_output_path(args.gif, (".gif",))

    from condiff.device import pick_device
    from condiff.images import save_image_atomic
    from condiff.tasks import UNCONDITIONAL
    from condiff.visualize import make_grid, save_gif

    pipeline = UNCONDITIONAL.load(args.model, pick_device(args.device), args.scheduler, args.steps)
    result = UNCONDITIONAL.run(pipeline, num=args.num, steps=args.steps, seed=args.seed, record=bool(args.gif),
                               output_type="latent")
    save_image_atomic(make_grid(result.images, scale=args.scale), args.out)
    print(f"condiff: wrote {args.num} samples to {args.out}")
    if args.gif:
        frames = result.trajectory.animation_frames(scale=args.scale)
        save_gif(frames, args.gif)
        print(f"condiff: wrote the denoising animation ({len(frames)} frames) to {args.gif}")
