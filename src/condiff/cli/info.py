"""`condiff info DIR`: a model folder's card (what it was trained on, how, its conditions and recipe)."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="describe a model folder (its model card)",
        description="Print the model card (README.md) that condiff train writes into a model folder: data, "
                    "steps, conditions and the packages that provide them, and the resolved recipe. For a "
                    "folder without a card, what its configs say.")
    parser.add_argument("model", help="a model folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.model_card import describe

    print(describe(args.model))
