"""`condiff` command line: one module per subcommand, each with `add_parser` and `run`.

Nothing heavy is imported here or at the top of the subcommand modules, so `condiff --help`
answers without loading torch.
"""

from __future__ import annotations

import argparse
import sys

from condiff import __version__
from condiff.cli import app, conditions, data, eval, image_to_image, info, noise, sample, schedules, train
from condiff.errors import CondiffError

SUBCOMMANDS = (train, sample, image_to_image, eval, info, conditions, noise, schedules, data, app)


class OneLineErrors(argparse.ArgumentParser):
    """A command-line mistake (an unknown option, `--num 1e9` for a whole number) is one line, like every
    other user mistake, pointing to --help instead of printing the usage."""

    def error(self, message: str):
        self.exit(2, f"condiff: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="condiff",
        description="Train and run small pixel-space diffusion models (DDPM), unconditional and conditional.",
    )
    parser.add_argument("--version", action="version", version=f"condiff {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        args.run(args)
    except CondiffError as err:
        print(f"condiff: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("condiff: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
