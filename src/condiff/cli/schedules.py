"""`condiff schedules --out schedules.png`: plot beta_t and alpha-bar_t for the three beta schedules."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "schedules", help="plot the linear, scaled-linear and squared-cosine noise schedules",
        description="Plot beta_t and the signal kept (alpha-bar_t) against t for each beta schedule.",
    )
    parser.add_argument("--out", default="schedules.png", help="PNG to write (default: schedules.png)")
    parser.add_argument("--num-train-timesteps", type=int, default=1000, help="T (default: 1000)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_TIMESTEPS, check_output_path, check_range
    from condiff.visualize import plot_schedules

    check_range("--num-train-timesteps", args.num_train_timesteps, 1, MAX_TIMESTEPS)
    check_output_path(args.out, (".png",))
    plot_schedules(args.out, num_train_timesteps=args.num_train_timesteps)
    print(f"condiff: wrote {args.out}")
