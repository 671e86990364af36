"""`condiff conditions list` and `condiff encode`: the condition plugins, and what a model sees."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("conditions", help="list the condition encoders (built-in and plugins)",
                                   description="Condition encoders turn an image into channels for the UNet.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the registered condition encoders and their settings")
    listing.set_defaults(run=run_list)

    encode = subparsers.add_parser(
        "encode", help="show what a condition encoder makes of an image",
        description="Write the condition channels a model would see for an input image, as a picture "
                    "(1 channel: gray; 3: colour; more: the channels side by side; an encoder may show its "
                    "own way, e.g. inpaint: the mask beside the masked image).")
    encode.add_argument("input", help="input image (any size and mode)")
    encode.add_argument("--condition", required=True, help="encoder name (see `condiff conditions list`)")
    encode.add_argument("--resolution", type=int, default=32, help="model resolution (default: 32)")
    encode.add_argument("--scale", type=int, default=4, help="nearest-neighbour enlargement (default: 4)")
    encode.add_argument("--out", default="condition.png", help="PNG to write (default: condition.png)")
    encode.set_defaults(run=run_encode)


def run_list(args: argparse.Namespace) -> None:
    import inspect

    from condiff.conditions.registry import get_condition, list_conditions

    for name in list_conditions():
        cls = get_condition(name)
        settings = [f"{p.name}={p.default!r}" for p in inspect.signature(cls.__init__).parameters.values()
                    if p.name != "self" and p.default is not inspect.Parameter.empty]
        print(f"{name:<12} {cls.channels} channel(s)  {cls.__module__}.{cls.__qualname__}  {' '.join(settings)}")


def channels_picture(encoder, channels, scale: int):
    """(C, H, W) in [-1, 1] -> a PIL picture of the encoder's panels (`ConditionEncoder.panels`) side by side."""
    import numpy as np
    from PIL import Image

    from condiff.images import to_uint8

    panels = [to_uint8(panel)[0] for panel in encoder.panels(channels)]
    gap = np.full((channels.shape[1], 1, 3), 255, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    image = Image.fromarray(row)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def run_encode(args: argparse.Namespace) -> None:
    from condiff.cli.common import MAX_RESOLUTION, MAX_SCALE, check_output_path, check_range

    check_range("--resolution", args.resolution, 1, MAX_RESOLUTION)
    check_range("--scale", args.scale, 1, min(MAX_SCALE, 4096 // args.resolution),
                f"at --resolution {args.resolution}, each panel stays within 4096 px")
    check_output_path(args.out, (".png",), inputs=(args.input,))

    from condiff.conditions.registry import get_condition
    from condiff.conditions.stack import checked_input
    from condiff.images import open_image, save_image_atomic

    encoder = get_condition(args.condition)()
    image = open_image(args.input)
    channels = checked_input(encoder, image, args.resolution)[0]  # a plugin's channels are checked
    save_image_atomic(channels_picture(encoder, channels, args.scale), args.out)
    print(f"condiff: wrote the {args.condition} condition ({channels.shape[0]} channel(s)) to {args.out}")
