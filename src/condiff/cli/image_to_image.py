"""`condiff colorize` and `condiff sketch2img`: one command shape for every image-to-image task.

What each task means (its condition, shipped model, output) is `condiff.tasks`; this module only reads
the command line and writes files: encode the input, sample with guidance, save.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from condiff.cli.common import add_sampler_options
from condiff.tasks import COLORIZE, SKETCH2IMG, Task

FULL_RES_HELP = {
    COLORIZE.name: " (the input's own luminance with the model's colour, in Lab)",
    SKETCH2IMG.name: " (nearest-neighbour enlarged)",
}


def add_parsers(subparsers) -> None:
    for task in (COLORIZE, SKETCH2IMG):
        parser = subparsers.add_parser(
            task.name, help=task.help,
            description=f"{task.help[0].upper()}{task.help[1:]} with a model trained on the "
                        f"'{task.condition}' condition. Writes the output at the model's resolution; "
                        "with --num N > 1, files OUT-0.png ... OUT-(N-1).png.")
        parser.add_argument("input", help="input image (any size and mode)")
        parser.add_argument("--model", help=f"model folder (default: the shipped Nouns {task.name} model)")
        parser.add_argument("--out", help=f"PNG to write (default: INPUT-{task.output_suffix}.png beside the input)")
        parser.add_argument("--num", type=int, default=1, help="outputs for the input (default: 1)")
        add_sampler_options(parser)
        parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], metavar="SCALE",
                            help="classifier-free guidance: one scale, or one per condition (default: 1)")
        parser.add_argument("--seed", type=int, default=0, help="output i uses seed + i (default: 0)")
        parser.add_argument("--gif", action="store_true", help="also write the denoising animation (OUT.gif)")
        parser.add_argument("--full-res", action="store_true",
                            help="also write OUT-fullres.png at the input's size" + FULL_RES_HELP.get(task.name, ""))
        parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
        parser.set_defaults(run=run, task=task)


def output_paths(out: Path, num: int) -> list[Path]:
    return [out] if num == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(num)]


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import check_output_path, check_positive

    task: Task = args.task
    check_positive("--num", args.num)
    check_positive("--steps", args.steps)
    source = Path(args.input)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-{task.output_suffix}.png")
    for path in output_paths(out, args.num):
        check_output_path(str(path), (".png",), inputs=(args.input,))

    from condiff.device import pick_device
    from condiff.images import open_image, save_image_atomic
    from condiff.visualize import save_gif

    image = open_image(args.input)  # errors about the input come before loading the model
    pipeline = task.load(args.model, pick_device(args.device), args.scheduler, args.steps)
    guidance = pipeline.guidance_scales(args.guidance[0] if len(args.guidance) == 1 else args.guidance)
    result = task.run(pipeline, image, args.num, args.steps, guidance, args.seed, record=args.gif)
    for path, output in zip(output_paths(out, args.num), result.images, strict=True):
        save_image_atomic(output, path)
        print(f"condiff: wrote {path}")
        if args.full_res:
            full = task.full_resolution(image, output)
            full_path = path.with_name(f"{path.stem}-fullres.png")
            save_image_atomic(full, full_path)
            print(f"condiff: wrote {full_path} ({full.width}x{full.height})")
    if args.gif:
        gif = out.with_suffix(".gif")
        save_gif(result.trajectory.animation_frames(scale=4), gif)
        print(f"condiff: wrote {gif}")
