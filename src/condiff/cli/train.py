"""`condiff train RECIPE [--set section.key=value ...]`: train a model from a recipe."""

from __future__ import annotations

import argparse
import os


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a recipe YAML",
        description="Train a DDPM from a recipe. The model folder, sample grids, TensorBoard logs and "
                    "checkpoints go to train.output_dir.",
    )
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/unconditional.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value, e.g. --set train.lr=2e-4 (repeatable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in train.output_dir instead of refusing")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: accelerate's choice, a GPU when "
                                         "present); train.batch_size is per process under accelerate launch")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, check_condition=check_condition)
    if args.device:
        from condiff.device import pick_device

        pick_device(args.device)  # a wrong device is one line before anything is built

    from condiff.training.from_recipe import train_recipe

    result = train_recipe(recipe, overwrite=args.overwrite, device=args.device)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch, one summary is enough
        return
    print(f"condiff: trained {result.steps} steps in {result.seconds / 60:.1f} min "
          f"(final loss {result.final_loss:.4f}); model in {result.output_dir}")
    if recipe.train.eval_images:
        evaluate_trained(recipe, result.output_dir, args.device)


def evaluate_trained(recipe, folder, device: str | None) -> None:
    """train.eval_images: `condiff eval` of the final model on images it never trained on, as the commands run
    it and the network alone; printed, and written to eval.json and the model card."""
    from condiff.data.sources import describe_source
    from condiff.device import pick_device
    from condiff.evaluation.evaluators import EvalSettings, as_run_and_alone
    from condiff.evaluation.report import fenced_tables, reports_json
    from condiff.model_card import add_evaluation
    from condiff.model_folder import saved_conditions
    from condiff.tasks import task_for

    stack = saved_conditions(folder)
    task = task_for(stack.names if stack is not None else [])
    if task is None:
        print(f"condiff: no evaluation (train.eval_images): condiff eval has no measures for a model with the "
              f"conditions [{', '.join(stack.names)}]")
        return
    data = None if describe_source(recipe.data.source) == "nouns" else recipe.data.source
    settings = EvalSettings(num=recipe.train.eval_images, device=pick_device(device), data=data)
    reports = as_run_and_alone(task, str(folder), settings)
    for report in reports:
        print(report.table(), end="\n\n", flush=True)
    add_evaluation(folder, fenced_tables(reports), reports_json(reports))
    print(f"condiff: wrote the evaluation to {folder}/eval.json and its model card")


def check_condition(spec, where: str) -> None:
    """A recipe's condition checked against its encoder (condiff.conditions.build_encoder), which imports the
    encoders and torch: only for recipes that have conditions."""
    from condiff.conditions.registry import build_encoder

    build_encoder(spec, where)
