"""`condiff upgrade DIR`: rewrite a model folder saved by an earlier condiff in today's format."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "upgrade", help="rewrite an older model folder in today's format",
        description="Move the settings that a model folder saved before condiff 0.2 keeps in model_index.json "
                    "(palette, self-conditioning, palette head) into its denoiser/ component, so that diffusers' "
                    "own DiffusionPipeline.from_pretrained loads them too. The weights are not touched; the "
                    "folder samples as before. condiff reads old folders as they are: this is needed only for "
                    "plain diffusers.")
    parser.add_argument("model", nargs="+", help="model folders")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.model_folder import upgrade_folder

    for folder in args.model:
        done = upgrade_folder(folder)
        print(f"condiff: {folder}: " + ("upgraded" if done else "already in today's format"))
