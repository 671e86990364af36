"""`condiff noise IMAGE --t 0 500 999`: the forward process at chosen timesteps, per beta schedule."""

from __future__ import annotations

import argparse

from condiff.config import BETA_SCHEDULES


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "noise", help="show an image noised at chosen timesteps (forward process)",
        description="Draw one row per beta schedule with the image noised to each timestep t "
                    "(the same noise everywhere, so only the schedule differs).",
    )
    parser.add_argument("image", help="input image (any size and mode)")
    parser.add_argument("--t", dest="timesteps", type=int, nargs="+", default=[0, 250, 500, 750, 999],
                        help="timesteps to show (default: 0 250 500 750 999)")
    parser.add_argument("--schedule", dest="schedules", choices=BETA_SCHEDULES, action="append",
                        help="beta schedule to show (repeatable; default: all three)")
    parser.add_argument("--num-train-timesteps", type=int, default=1000,
                        help="T of the schedules (default: 1000, as models are trained)")
    parser.add_argument("--size", type=int, default=32, help="resize the image to this square size (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.add_argument("--out", default="noise.png", help="PNG to write (default: noise.png)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_TIMESTEPS, check_output_path, check_range, check_seed, check_timesteps

    check_range("--num-train-timesteps", args.num_train_timesteps, 1, MAX_TIMESTEPS)
    check_range("--size", args.size, 1, 512, "the strip holds every timestep of every schedule")
    check_seed(args.seed)
    check_timesteps(args.timesteps, args.num_train_timesteps)
    check_output_path(args.out, (".png",), inputs=(args.image,))

    from condiff.data.preprocess import prepare_image
    from condiff.images import open_image, save_image_atomic
    from condiff.visualize import noise_strip

    image = prepare_image(open_image(args.image), args.size)
    strip = noise_strip(image, args.schedules or BETA_SCHEDULES, args.timesteps,
                        num_train_timesteps=args.num_train_timesteps, seed=args.seed,
                        scale=max(1, 128 // args.size))
    save_image_atomic(strip, args.out)
    print(f"condiff: wrote {args.out}")
