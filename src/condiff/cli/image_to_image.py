"""`condiff colorize`, `condiff sketch2img` and `condiff generate`: image-to-image commands.

What each task means (its condition, shipped model, output) is `condiff.tasks`; this module only reads
the command line and writes files. colorize and sketch2img take input images (files or folders of
them, one output each, the model loaded once); generate takes any conditional model (built-in
conditions or plugins) and one input per condition (`--input NAME=PATH`) or one image for all
(`--input PATH`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from condiff.cli.common import add_palette_option, add_sampler_options, add_silhouette_option
from condiff.tasks import COLORIZE, GENERATE, SKETCH2IMG, Task

FULL_RES_HELP = {
    COLORIZE.name: " (the input's own luminance with the model's colour, in Lab)",
    SKETCH2IMG.name: " (nearest-neighbour enlarged)",
    GENERATE.name: " of the first input (nearest-neighbour enlarged)",
}


def add_parsers(subparsers) -> None:
    for task in (COLORIZE, SKETCH2IMG):
        parser = subparsers.add_parser(
            task.name, help=task.help,
            description=f"{task.help[0].upper()}{task.help[1:]} with a model trained on the "
                        f"'{task.condition}' condition. Writes each output at the model's resolution; "
                        "with --num N > 1, files OUT-0.png ... OUT-(N-1).png. Several inputs, or a folder "
                        f"of them, give one output each: INPUT-{task.output_suffix}.png beside each input "
                        f"file, in FOLDER-{task.output_suffix}/ for a folder, or in --out-dir.")
        parser.add_argument("input", nargs="+", help="input images (any size and mode), or folders of images")
        parser.add_argument("--model", help=f"model folder (default: the shipped Nouns {task.name} model)")
        add_output_options(parser, task)
        parser.add_argument("--out-dir", metavar="DIR",
                            help=f"write every output into DIR (as INPUT-{task.output_suffix}.png)")
        parser.set_defaults(run=run, task=task)
    parser = subparsers.add_parser(
        GENERATE.name, help=GENERATE.help,
        description="Generate images with any conditional model, whatever its conditions (built-in or "
                    "plugins): --input NAME=PATH gives condition NAME its own input, once per condition; "
                    "--input PATH feeds one image to every condition. Writes the output at the model's "
                    "resolution; with --num N > 1, files OUT-0.png ... OUT-(N-1).png.")
    parser.add_argument("--model", required=True, help="a conditional model folder written by `condiff train`")
    parser.add_argument("--input", action="append", required=True, metavar="[NAME=]PATH",
                        help="an input image for condition NAME (repeat for each condition), or one image for all")
    add_output_options(parser, GENERATE)
    parser.set_defaults(run=run, task=GENERATE, out_dir=None)


def add_output_options(parser: argparse.ArgumentParser, task: Task) -> None:
    parser.add_argument("--out", help=f"PNG to write for one input (default: INPUT-{task.output_suffix}.png beside "
                                      "the input); with --num N > 1, OUT-0.png ... OUT-(N-1).png")
    parser.add_argument("--num", type=int, default=1, help="outputs for each input (default: 1)")
    add_sampler_options(parser)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], metavar="SCALE",
                        help="classifier-free guidance: one scale, or one per condition (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="output i uses seed + i (default: 0)")
    add_palette_option(parser)
    add_silhouette_option(parser)
    parser.add_argument("--gif", action="store_true", help="also write the denoising animation (OUT.gif)")
    parser.add_argument("--full-res", action="store_true",
                        help="also write OUT-fullres.png at the input's size" + FULL_RES_HELP[task.name])
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")


# --- inputs and outputs -------------------------------------------------------------------------


def input_files(args: argparse.Namespace) -> dict[str | None, str]:
    """generate's {condition name: path}, or {None: path} for one image that feeds every condition."""
    from condiff.errors import CondiffError

    named: dict[str | None, str] = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or not name.isidentifier():  # a plain path (which may itself contain "=")
            name, path = None, item
        if name in named:
            raise CondiffError(f"--input {item}: {'one image for all conditions' if name is None else name} "
                               "was given twice; give each condition one input")
        named[name] = path
    if None in named and len(named) > 1:
        raise CondiffError("--input: give either one image for all conditions (--input PATH) or one per "
                           "condition (--input NAME=PATH ...), not both")
    return named


def input_jobs(args: argparse.Namespace) -> list[tuple[dict[str | None, str], Path]]:
    """[(inputs as input_files gives them, output PNG)] for every input, before any work.

    colorize and sketch2img: each file given, and each image directly in a folder given, is one job;
    generate: one job for its set of inputs."""
    from condiff.errors import CondiffError
    from condiff.images import list_image_files

    task: Task = args.task
    suffix = task.output_suffix
    if task is GENERATE:
        files = input_files(args)
        first = Path(next(iter(files.values())))
        return [(files, Path(args.out) if args.out else first.with_name(f"{first.stem}-{suffix}.png"))]
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CondiffError(f"--out-dir {out_dir}: is a file; give a folder (it is created when missing)")
    sources: list[tuple[Path, Path]] = []  # (input, its default folder)
    for item in map(Path, args.input):
        if not item.is_dir():
            sources.append((item, item.parent))
            continue
        found = list_image_files(item, recursive=False)
        if not found:
            raise CondiffError(f"{item}: a folder without images (.png, .jpg, ...); give image files or another folder")
        sources += [(path, item.with_name(f"{item.name}-{suffix}")) for path in found]
    if args.out and (len(sources) > 1 or out_dir is not None):
        raise CondiffError(f"--out names one output; with {len(sources)} inputs use --out-dir DIR")
    if args.out:
        return [({None: str(sources[0][0])}, Path(args.out))]
    jobs = [({None: str(path)}, (out_dir or folder) / f"{path.stem}-{suffix}.png") for path, folder in sources]
    seen: dict[Path, str] = {}
    for files, out in jobs:
        if out in seen:
            raise CondiffError(f"{files[None]} and {seen[out]} would both write {out}; give them separate --out-dir")
        seen[out] = files[None]
    return jobs


def output_plan(out: Path, num: int, full_res: bool, gif: bool) -> tuple[list[Path], list[Path], Path | None]:
    """(outputs, full-resolution outputs, GIF): every file the command will write."""
    outputs = [out] if num == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(num)]
    full = [path.with_name(f"{path.stem}-fullres.png") for path in outputs] if full_res else []
    return outputs, full, out.with_suffix(".gif") if gif else None


def check_outputs(paths: list[Path], inputs: list[str]) -> None:
    """Every output, the extra ones included, is checked before any work: never an input, right suffix."""
    from condiff.cli.common import check_output_path

    for path in paths:
        check_output_path(str(path), (path.suffix.lower(),) if path.suffix.lower() == ".gif" else (".png",),
                          inputs=tuple(inputs))


# --- the command --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_BATCH, check_guidance, check_range, check_seed, check_steps

    task: Task = args.task
    check_range("--num", args.num, 1, MAX_BATCH, "sampled in one batch")
    check_steps(args.steps)
    check_seed(args.seed)
    check_guidance(args.guidance)
    jobs = input_jobs(args)
    every_input = [path for files, _ in jobs for path in files.values()]
    for _, out in jobs:
        outputs, full, gif = output_plan(out, args.num, args.full_res, args.gif)
        check_outputs([*outputs, *full, *([gif] if gif else [])], every_input)

    from condiff.device import pick_device
    from condiff.images import open_image

    for files, _ in jobs:  # every input's errors before loading the model
        for path in files.values():
            open_image(path).close()
    pipeline = task.load(args.model, pick_device(args.device), args.scheduler, args.steps)
    guidance = pipeline.guidance_scales(args.guidance[0] if len(args.guidance) == 1 else args.guidance)
    for files, out in jobs:
        out.parent.mkdir(parents=True, exist_ok=True)
        run_one(args, pipeline, guidance, {name: open_image(path) for name, path in files.items()}, out)


def run_one(args: argparse.Namespace, pipeline, guidance, images: dict, out: Path) -> None:
    """One input (or generate's set of inputs) -> its outputs, written as they are ready."""
    from condiff.images import save_image_atomic
    from condiff.visualize import save_gif

    task: Task = args.task
    outputs, full, gif = output_plan(out, args.num, args.full_res, args.gif)
    inputs = images[None] if None in images else images
    result = task.run(pipeline, inputs, args.num, args.steps, guidance, args.seed, record=args.gif,
                      palette=args.palette, silhouette=args.silhouette)
    source = next(iter(images.values()))
    for index, (path, output) in enumerate(zip(outputs, result.images, strict=True)):
        save_image_atomic(output, path)
        print(f"condiff: wrote {path}")
        if full:
            big = task.full_resolution(source, output)
            save_image_atomic(big, full[index])
            print(f"condiff: wrote {full[index]} ({big.width}x{big.height})")
    if gif:
        save_gif(result.trajectory.animation_frames(scale=4), gif)
        print(f"condiff: wrote {gif}")
