"""Checks shared by the subcommands: user mistakes become one-line CondiffErrors before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

from condiff.errors import CondiffError
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, SAMPLERS


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """--steps and --scheduler, with the defaults the sampler benchmark chose."""
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLER_STEPS,
                        help=f"denoising steps (default: {DEFAULT_SAMPLER_STEPS})")
    parser.add_argument("--scheduler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                        help=f"sampler (default: {DEFAULT_SAMPLER} = DPM-Solver++)")


def check_positive(option: str, value: int) -> None:
    if value <= 0:
        raise CondiffError(f"{option} {value}: must be a positive number")


def check_output_path(path: str, suffixes: tuple[str, ...], inputs: tuple[str, ...] = ()) -> Path:
    """An output file: right extension, not a folder, never one of the inputs."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CondiffError(f"{path}: output must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise CondiffError(f"{path}: is a folder; give a file name such as {out / ('out' + suffixes[0])}")
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise CondiffError(f"{path}: refusing to overwrite the input file; choose another --out")
    if out.parent.exists() and not out.parent.is_dir():
        raise CondiffError(f"{path}: {out.parent} is not a folder")
    return out
