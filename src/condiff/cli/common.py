"""Checks shared by the subcommands: user mistakes become one-line CondiffErrors before any work.

Every numeric option has a range, checked at the top of its command's `run` with `check_range` (or the
helpers built on it) before a model is loaded or a file is read: beyond it an option would crash torch
or exhaust memory or time. The limits that several commands share are named here.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

from condiff.config import (
    DEFAULT_PRECISION,
    DEFAULT_SAMPLER,
    DEFAULT_SAMPLER_STEPS,
    PRECISIONS,
    RANGES,
    SAMPLERS,
    SEED_MAX,
)
from condiff.errors import CondiffError, shown
from condiff.steering import OPTIONS

MAX_TIMESTEPS = int(RANGES["scheduler.num_train_timesteps"].high)  # a noise schedule's length, as in recipes
MAX_STEPS = MAX_TIMESTEPS  # sampling steps: no model has more; a loaded model checks its own limit
MAX_RESOLUTION = int(RANGES["data.resolution"].high)
MAX_BATCH = 256  # images sampled at once (sample, colorize, sketch2img)
MAX_SCALE = 16  # nearest-neighbour enlargement
MAX_PICTURE_SIDE = 16_384  # pixels per side of a written grid or picture


def add_sampling_options(parser: argparse.ArgumentParser, conditional: bool = True, per_condition: bool = True) -> None:
    """--steps, --scheduler and --precision, with the defaults the sampler benchmark chose; a conditional
    model's command also takes --guidance (one scale, or with `per_condition` one per condition). Then one
    option per sampling-time steering option (condiff.steering.OPTIONS), e.g. --palette, --silhouette: an
    unconditional model's command takes only those its model gives (no condition gives it any)."""
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLER_STEPS,
                        help=f"denoising steps (default: {DEFAULT_SAMPLER_STEPS})")
    parser.add_argument("--scheduler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                        help=f"sampler (default: {DEFAULT_SAMPLER} = DPM-Solver++; dpm-logsnr: DPM-Solver++ with "
                             "steps uniform in log-SNR, more of them at low noise)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help=f"number type the network computes in (default: {DEFAULT_PRECISION}); bfloat16 is "
                             "faster on CPUs with native bfloat16 and on GPUs, with samples close to but not "
                             "identical to float32's")
    if conditional:
        parser.add_argument("--guidance", type=float, nargs="+" if per_condition else None, default=1.0,
                            metavar="SCALE", help="classifier-free guidance: one scale" +
                            (", or one per condition" if per_condition else " for every condition") + " (default: 1)")
    for option in OPTIONS:
        if conditional or option.given_by == "model":
            parser.add_argument(option.flag, dest=option.name, choices=option.modes, default=option.default,
                                help=f"{option.help} (default: {option.default})")


def call_options(args: argparse.Namespace) -> dict:
    """The pipeline call's options the command line gave, checked before any work: each steering mode
    ({option name: mode}) and, where the command takes it, the guidance (one scale, or one per condition)."""
    options = {option.name: getattr(args, option.name) for option in OPTIONS if hasattr(args, option.name)}
    if hasattr(args, "guidance"):
        from condiff.pipeline import check_guidance

        scales = args.guidance if isinstance(args.guidance, list) else [args.guidance]
        options["guidance"] = check_guidance(scales[0] if len(scales) == 1 else scales)
    return options


def check_range(option: str, value: float, low: float, high: float, why: str = "") -> None:
    """`option`'s value must be finite and within low..high; `why` explains a limit that is not obvious."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CondiffError(f"{option} {value}: must be a finite number from {low:g} to {high:g}")
    if not low <= value <= high:
        reason = f" ({why})" if why else ""
        raise CondiffError(f"{option} {shown(value)}: must be from {_text(low)} to {_text(high)}{reason}")


def _text(number: float) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


def check_seed(value: int, option: str = "--seed") -> None:
    check_range(option, value, 0, SEED_MAX, "seeds are 32-bit, as numpy takes them")


def check_steps(value: int) -> None:
    check_range("--steps", value, 1, MAX_STEPS, "the model's own limit is checked when it is loaded")


def check_grid(num: int, resolution: int, scale: int) -> None:
    """A square grid of `num` images of `resolution` px enlarged `scale` times must stay MAX_PICTURE_SIDE
    px on a side or less (it is held in memory whole)."""
    side = math.ceil(math.sqrt(num)) * (resolution * scale + 1) + 1
    if side > MAX_PICTURE_SIDE:
        raise CondiffError(f"--num {num}, --resolution {resolution} and --scale {scale}: the grid would be {side} px "
                           f"on a side, more than {MAX_PICTURE_SIDE} px; lower one of them")


def check_timesteps(timesteps: list[int], num_train_timesteps: int) -> None:
    """--t: at most 32 timesteps, each in 0..num_train_timesteps - 1."""
    if len(timesteps) > 32:
        raise CondiffError(f"--t: {len(timesteps)} timesteps given; one strip shows at most 32")
    for step in timesteps:
        check_range("--t", step, 0, num_train_timesteps - 1, f"--num-train-timesteps is {num_train_timesteps}")


def check_output_path(path: str, suffixes: tuple[str, ...], inputs: tuple[str, ...] = ()) -> Path:
    """An output file, checked before any work: right extension, not a folder, never one of the inputs,
    and a place where a file can be created (`condiff.images.check_writable`)."""
    from condiff.images import check_writable

    out = Path(path)
    check_writable(out)  # first: a name too long cannot even be looked at
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


def check_distinct(outputs: Iterable[tuple[Path, str]], inputs: Iterable[str | Path], fix: str) -> None:
    """No two of a command's outputs are one file, and none is one of its inputs, before any work: paths are
    compared resolved (`f/../f/x.png`, a folder reached through a symlink), or one output would silently
    replace another. `outputs` are (path, what writes it, for the message); `fix` says how to part them."""
    taken = {Path(source).resolve(): f"the input {source}" for source in inputs}
    folders: dict[Path, Path] = {}  # each folder resolved once: --out-dir may hold 100 000 files
    for path, writer in outputs:
        if path.parent not in folders:
            folders[path.parent] = path.parent.resolve()
        where = folders[path.parent] / path.name
        if where in taken:
            other = taken[where]
            if other.startswith("the input "):
                raise CondiffError(f"{path}: is {other}; refusing to overwrite an input; {fix}")
            raise CondiffError(f"{other} and {writer} would both write {path}; {fix}")
        taken[where] = writer


def printable(text: str) -> str:
    """`text` on one line, for a message: control characters (a newline in a file name) written as repr
    writes them, so no name can add a line that reads like another message."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
