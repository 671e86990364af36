"""`condiff colorize` and `condiff sketch2img`: one command shape for every image-conditioned task.

A task is only a name, the condition its model must have been trained on, and a default model folder;
the work is the same: encode the input, sample with guidance, save.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from condiff.cli.common import add_sampler_options


@dataclass(frozen=True)
class Task:
    command: str
    condition: str
    shipped_model: str  # condiff.pretrained name used when --model is omitted
    help: str
    output_suffix: str


TASKS = (
    Task("colorize", "grayscale", "colorize", "colour a grayscale image", "colorized"),
    Task("sketch2img", "sketch", "sketch2img", "turn a line drawing into an image", "generated"),
)


def add_parsers(subparsers) -> None:
    for task in TASKS:
        parser = subparsers.add_parser(
            task.command, help=task.help,
            description=f"{task.help[0].upper()}{task.help[1:]} with a model trained on the "
                        f"'{task.condition}' condition. Writes the output at the model's resolution; "
                        "with --num N > 1, files OUT-0.png ... OUT-(N-1).png.")
        parser.add_argument("input", help="input image (any size and mode)")
        parser.add_argument("--model", help=f"model folder (default: the shipped Nouns {task.shipped_model} model)")
        parser.add_argument("--out", help=f"PNG to write (default: INPUT-{task.output_suffix}.png beside the input)")
        parser.add_argument("--num", type=int, default=1, help="outputs for the input (default: 1)")
        add_sampler_options(parser)
        parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], metavar="SCALE",
                            help="classifier-free guidance: one scale, or one per condition (default: 1)")
        parser.add_argument("--seed", type=int, default=0, help="output i uses seed + i (default: 0)")
        parser.add_argument("--gif", action="store_true", help="also write the denoising animation (OUT.gif)")
        parser.add_argument("--full-res", action="store_true",
                            help="also write OUT-fullres.png at the input's size" + (
                                " (the input's own luminance with the model's colour, in Lab)"
                                if task.condition == "grayscale" else " (nearest-neighbour enlarged)"))
        parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
        parser.set_defaults(run=run, task=task)


def output_paths(out: Path, num: int) -> list[Path]:
    return [out] if num == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(num)]


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import check_output_path, check_positive, pick_device
    from condiff.errors import CondiffError

    task: Task = args.task
    check_positive("--num", args.num)
    check_positive("--steps", args.steps)
    source = Path(args.input)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-{task.output_suffix}.png")
    for path in output_paths(out, args.num):
        check_output_path(str(path), (".png",), inputs=(args.input,))

    from condiff.images import open_image, save_image_atomic, to_uint8
    from condiff.model import load_conditional_pipeline
    from condiff.pretrained import resolve_model
    from condiff.sampling import make_sampler
    from condiff.visualize import save_gif

    image = open_image(args.input)  # errors about the input come before loading the model
    args.model = resolve_model(args.model, task.shipped_model)
    pipeline = load_conditional_pipeline(args.model)
    if task.condition not in pipeline.conditions.names:
        trained_on = ", ".join(pipeline.conditions.names)
        raise CondiffError(f"{args.model}: this model was trained on conditions [{trained_on}]; "
                           f"{task.command} needs {task.condition}")
    pipeline.scheduler = make_sampler(pipeline.scheduler, args.scheduler, args.steps)
    pipeline.to(pick_device(args.device))
    scales = pipeline.guidance_scales(args.guidance[0] if len(args.guidance) == 1 else args.guidance)
    samples = sample_task(task, pipeline, image, args.num, args.steps, scales, args.seed, record=args.gif)
    from PIL import Image

    outputs = [Image.fromarray(array) for array in to_uint8(samples.images)]
    for path, output in zip(output_paths(out, args.num), outputs, strict=True):
        save_image_atomic(output, path)
        print(f"condiff: wrote {path}")
        if args.full_res:
            full = full_resolution(task, image, output)
            full_path = path.with_name(f"{path.stem}-fullres.png")
            save_image_atomic(full, full_path)
            print(f"condiff: wrote {full_path} ({full.width}x{full.height})")
    if args.gif:
        frames = samples.animation_frames(scale=4)
        gif = out.with_suffix(".gif")
        save_gif(frames, gif)
        print(f"condiff: wrote {gif}")


def sample_task(task: Task, pipeline, image, num: int, steps: int, guidance, seed: int, record: bool = False):
    """`num` outputs for one input image; a colorization keeps the input's lightness exactly."""
    samples = pipeline(image, num_images_per_input=num, num_inference_steps=steps, guidance=guidance, seed=seed,
                       record=record)
    if task.condition == "grayscale":
        from condiff.colorize import keep_luma

        channels = pipeline.conditions.channel_slices[pipeline.conditions.names.index("grayscale")]
        gray = pipeline.conditions.encode_inputs([image], pipeline.resolution)[:, channels]
        samples.images = keep_luma(samples.images, gray)
    return samples


def full_resolution(task: Task, source, output):
    from condiff.images import to_rgb

    if task.condition == "grayscale":
        from condiff.colorize import recombine_luminance

        return recombine_luminance(source, output)
    from PIL import Image

    return output.resize(to_rgb(source).size, Image.Resampling.NEAREST)
