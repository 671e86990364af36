"""`condiff colorize`, `condiff sketch2img` and `condiff generate`: image-to-image commands.

What each task means (its condition, shipped model, output) is `condiff.tasks`; this module only reads
the command line and writes files. colorize and sketch2img take input images (files or folders of
them, one output each, the model loaded once); generate takes any conditional model (built-in
conditions or plugins) and one input per condition (`--input NAME=PATH`) or one image for all
(`--input PATH`).

Every output is planned and checked before any work (never an input, no two one file, nothing replaced in an
output folder, which the run holds: condiff.folder_lock), and all are moved into place together at the end:
a run that fails or is interrupted writes none.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from condiff.cli.common import add_sampling_options, call_options
from condiff.errors import CondiffError
from condiff.tasks import Task, list_tasks


def add_parsers(subparsers) -> None:
    """One command per registered task with a condition: one that takes any model, as `generate` does,
    gets one input per condition; the others take input images."""
    for task in list_tasks():
        if task.condition and task.takes_any_model:
            add_any_model_parser(subparsers, task)
        elif task.condition:
            add_image_parser(subparsers, task)


def add_image_parser(subparsers, task: Task) -> None:
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


def add_any_model_parser(subparsers, task: Task) -> None:
    parser = subparsers.add_parser(
        task.name, help=task.help,
        description="Generate images with any conditional model, whatever its conditions (built-in or "
                    "plugins): --input NAME=PATH gives condition NAME its own input, once per condition; "
                    "--input PATH feeds one image to every condition. Writes the output at the model's "
                    "resolution; with --num N > 1, files OUT-0.png ... OUT-(N-1).png.")
    parser.add_argument("--model", required=True, help="a conditional model folder written by `condiff train`")
    parser.add_argument("--input", action="append", required=True, metavar="[NAME=]PATH",
                        help="an input image for condition NAME (repeat for each condition), or one image for all "
                             "(a file that exists is read as one, whatever its name holds)")
    add_output_options(parser, task)
    parser.set_defaults(run=run, task=task, out_dir=None)


def add_output_options(parser: argparse.ArgumentParser, task: Task) -> None:
    parser.add_argument("--out", help=f"PNG to write for one input (default: INPUT-{task.output_suffix}.png beside "
                                      "the input); with --num N > 1, OUT-0.png ... OUT-(N-1).png")
    parser.add_argument("--num", type=int, default=1, help="outputs for each input (default: 1)")
    add_sampling_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="output i uses seed + i (default: 0)")
    parser.add_argument("--gif", action="store_true", help="also write the denoising animation (OUT.gif)")
    parser.add_argument("--full-res", action="store_true",
                        help="also write OUT-fullres.png at the input's size" + task.full_res_help)
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")


# --- inputs and outputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input (or generate's set of inputs) and the output it gives."""

    files: dict[str | None, str]  # {condition name: path}, or {None: path} for one image for every condition
    out: Path  # the first output; output_plan gives the others
    folder: Path | None = None  # the output folder it writes into (FOLDER-SUFFIX/ or --out-dir), held for the run
    # and never overwritten; None: beside its input, or --out

    @property
    def label(self) -> str:
        """Its inputs as the command line gave them, for messages."""
        return ", ".join(path if name is None else f"{name}={path}" for name, path in self.files.items())


def split_input(item: str) -> tuple[str | None, str]:
    """generate's --input: (NAME, PATH) for NAME=PATH, or (None, item) for one image for every condition. A file
    that exists is read as a file whatever its name holds (`x=1.png`); so is a path whose part before "=" holds
    a folder (`photos/a=b.png`)."""
    name, sep, path = item.partition("=")
    if not sep or not name or "/" in name or os.sep in name or os.path.lexists(item):
        return None, item
    if not os.path.lexists(path):
        raise CondiffError(f"--input {item}: neither a file {item} nor, for condition {name}, a file {path}; "
                           "check the path")
    return name, path


def input_files(args: argparse.Namespace) -> dict[str | None, str]:
    """generate's {condition name: path}, or {None: path} for one image that feeds every condition."""
    named: dict[str | None, str] = {}
    for item in args.input:
        name, path = split_input(item)
        if name in named:
            raise CondiffError(f"--input {item}: {'one image for all conditions' if name is None else name} "
                               "was given twice; give each condition one input")
        named[name] = path
    if None in named and len(named) > 1:
        raise CondiffError("--input: give either one image for all conditions (--input PATH) or one per "
                           "condition (--input NAME=PATH ...), not both")
    return named


def input_jobs(args: argparse.Namespace) -> list[Job]:
    """Every input's job, before any work.

    colorize and sketch2img: each file given, and each image directly in a folder given, is one job;
    generate: one job for its set of inputs."""
    from condiff.images import list_image_files

    task: Task = args.task
    suffix = task.output_suffix
    if task.takes_any_model:
        files = input_files(args)
        first = Path(next(iter(files.values())))
        return [Job(files, Path(args.out) if args.out else first.with_name(f"{first.stem}-{suffix}.png"))]
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CondiffError(f"--out-dir {out_dir}: is a file; give a folder (it is created when missing)")
    sources: list[tuple[Path, Path | None]] = []  # (input, the output folder it writes into)
    for item in map(Path, args.input):
        if not item.is_dir():
            sources.append((item, out_dir))
            continue
        found = list_image_files(item, recursive=False)
        if not found:
            raise CondiffError(f"{item}: a folder without images (.png, .jpg, ...); give image files or another folder")
        sources += [(path, out_dir or output_folder(item, suffix)) for path in found]
    if args.out and (len(sources) > 1 or out_dir is not None):
        raise CondiffError(f"--out names one output; with {len(sources)} inputs use --out-dir DIR")
    if args.out:
        return [Job({None: str(sources[0][0])}, Path(args.out))]
    return [Job({None: str(path)}, (folder or path.parent) / f"{path.stem}-{suffix}.png", folder)
            for path, folder in sources]


def output_folder(folder: Path, suffix: str) -> Path:
    """FOLDER-SUFFIX beside an input folder; `.` and `..` are named by the folder they are."""
    named = folder if folder.name not in ("", "..") else folder.resolve()
    if not named.name:
        raise CondiffError(f"{folder}: a folder without a name to put -{suffix} after; give --out-dir DIR")
    return named.with_name(f"{named.name}-{suffix}")


def output_plan(out: Path, num: int, full_res: bool, gif: bool) -> tuple[list[Path], list[Path], Path | None]:
    """(outputs, full-resolution outputs, GIF): every file the command will write."""
    outputs = [out] if num == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(num)]
    full = [path.with_name(f"{path.stem}-fullres.png") for path in outputs] if full_res else []
    return outputs, full, out.with_suffix(".gif") if gif else None


def planned_files(args: argparse.Namespace, job: Job) -> list[Path]:
    outputs, full, gif = output_plan(job.out, args.num, args.full_res, args.gif)
    return [*outputs, *full, *([gif] if gif else [])]


def check_outputs(args: argparse.Namespace, jobs: list[Job]) -> None:
    """Every output, the extra ones included, is checked before any work: right suffix, a place that takes a
    file, never an input, and no two of them one file (compared resolved)."""
    from condiff.cli.common import check_distinct, check_output_path

    inputs = [path for job in jobs for path in job.files.values()]
    for job in jobs:
        for path in planned_files(args, job):
            check_output_path(str(path), (path.suffix.lower(),) if path.suffix.lower() == ".gif" else (".png",),
                              inputs=tuple(inputs))
    check_distinct(((path, job.label) for job in jobs for path in planned_files(args, job)), inputs,
                   fix="choose another --out" if args.task.takes_any_model else "give them separate --out-dir")


def hold_folders(args: argparse.Namespace, jobs: list[Job], held: contextlib.ExitStack) -> None:
    """Hold each output folder (condiff.folder_lock) until `held` closes: another run writing there is refused.
    Then, before any work, check that no file already in one would be replaced (as `sample --out-dir` never does)."""
    from condiff.folder_lock import hold_folder

    folders = {job.folder.resolve(): job.folder for job in jobs if job.folder is not None}  # each locked once
    fix = "choose another --out-dir" if args.out_dir else "write into another folder with --out-dir"
    for folder in folders.values():
        held.enter_context(hold_folder(folder, f"--out-dir {folder}" if args.out_dir else str(folder), fix=fix))
    for job in jobs:
        for path in planned_files(args, job) if job.folder is not None else ():
            if os.path.lexists(path):
                raise CondiffError(f"{path}: already exists; remove it or {fix}")


# --- the command --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_BATCH, check_range, check_seed, check_steps, printable

    check_range("--num", args.num, 1, MAX_BATCH, "sampled in one batch")
    check_steps(args.steps)
    check_seed(args.seed)
    options = call_options(args)
    jobs = input_jobs(args)
    check_outputs(args, jobs)

    from condiff.images import open_image

    for job in jobs:  # every input's errors before loading the model
        for path in job.files.values():
            open_image(path).close()
    with contextlib.ExitStack() as held:
        hold_folders(args, jobs, held)
        written = run_jobs(args, jobs, options)
    for line in written:
        print(f"condiff: wrote {printable(line)}")


def run_jobs(args: argparse.Namespace, jobs: list[Job], options: dict) -> list[str]:
    """Every job's outputs, moved into place together at the end: a failed or interrupted run writes none.
    Every input is encoded first, so one that its conditions refuse stops the run before any sampling.
    `options`: the pipeline call's (`call_options`)."""
    from condiff.device import pick_device
    from condiff.images import StagedFiles, open_image

    task: Task = args.task
    pipeline = task.load(args.model, pick_device(args.device), args.scheduler, args.steps, args.precision)
    for job in jobs:
        encode(pipeline, job, {name: open_image(path) for name, path in job.files.items()})
    written: list[str] = []
    with StagedFiles() as staged:
        for job in jobs:
            written += run_one(args, pipeline, options, job, staged)
        staged.commit()
    return written


def encode(pipeline, job: Job, images: dict):
    """The condition channels of one job's images; what the conditions refuse (a plugin's error included) is
    one line naming the input, and a plugin's bug names it in a note under the traceback."""
    try:
        return pipeline.encode(images[None] if None in images else images)
    except CondiffError as err:
        raise CondiffError(f"{job.label}: {err}") from None
    except Exception as err:
        err.add_note(f"condiff: while encoding {job.label}")
        raise


def run_one(args: argparse.Namespace, pipeline, options: dict, job: Job, staged) -> list[str]:
    """One job's outputs, staged; what each will be, for the messages."""
    from condiff.images import open_image
    from condiff.visualize import save_gif, trajectory_frames

    task: Task = args.task
    images = {name: open_image(path) for name, path in job.files.items()}
    outputs, full, gif = output_plan(job.out, args.num, args.full_res, args.gif)
    result = task.run(pipeline, None, args.num, args.steps, args.seed, record=args.gif,
                      condition_channels=encode(pipeline, job, images), **options)
    source = next(iter(images.values()))
    written = []
    for index, (path, output) in enumerate(zip(outputs, result.images, strict=True)):
        staged.save_image(output, path)
        written.append(str(path))
        if full:
            big = task.full_resolution(source, output)
            staged.save_image(big, full[index])
            written.append(f"{full[index]} ({big.width}x{big.height})")
    if gif:
        frames = trajectory_frames(result.trajectory, scale=4)
        staged.write(gif, lambda tmp: save_gif(frames, tmp), suffix=".gif")
        written.append(str(gif))
    return written
