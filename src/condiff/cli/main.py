"""`condiff` command line: one module per subcommand, each with `add_parser` and `run`.

Nothing heavy is imported here or at the top of the subcommand modules, so `condiff --help`
answers without loading torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from condiff import __version__
from condiff.cli import app, conditions, data, eval, image_to_image, info, noise, sample, schedules, train, upgrade
from condiff.cli.common import printable
from condiff.errors import CondiffError

SUBCOMMANDS = (train, sample, image_to_image, eval, info, upgrade, conditions, noise, schedules, data, app)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler's stop): handled as Ctrl-C, so every command cleans up the same way
    (temporary files removed, outputs not yet moved into place discarded, an output folder's lock released)."""


def _terminate(signum: int, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    # Commands with their own SIGTERM handling (training's stop after a step) set and restore theirs.
    main_thread = threading.current_thread() is threading.main_thread()  # where signals can be handled
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        args.run(args)
    except CondiffError as err:
        print(f"condiff: error: {printable(str(err))}", file=sys.stderr)  # one line, whatever a name holds
        return err.exit_code
    except BrokenPipeError:  # `condiff info DIR | head`: the reader has gone, and wants nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor the flush at exit
        return 141  # as a shell reports a process ended by SIGPIPE
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"condiff: interrupted{' (SIGTERM)' if terminated else ''}", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
