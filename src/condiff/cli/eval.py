"""`condiff eval`: quality numbers for a model, beside reference rows measured in the same run."""

from __future__ import annotations

import argparse

from condiff.cli.common import add_sampling_options, call_options
from condiff.tasks import TASKS


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="measure a model's quality (FD, KID, PSNR, SSIM, edge F1)",
        description="Measure quality on held-out Nouns in the Nouns feature network's space, or with --data on "
                    "your own images the model never trained on, with measures that need no network. Each table "
                    "has the model's row and reference rows from the same run: the truth or real vs real (the "
                    "floor) and trivial baselines (noise, gray, the mean image, chance). Without --model, the "
                    "shipped models.")
    parser.add_argument("task", nargs="?", choices=(*TASKS, "all"), default="all",
                        help="what to evaluate (default: all three shipped models)")
    parser.add_argument("--model", help="model folder (default: the shipped model for the task)")
    parser.add_argument("--data", metavar="FOLDER",
                        help="measure on your own images instead of Nouns: a folder (or any data.source); the "
                             "images the model never trained on (its recipe's data.held_out_every split)")
    parser.add_argument("--num", type=int, default=500, help="images per set (default: 500)")
    add_sampling_options(parser, per_condition=False)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--inception", action="store_true",
                        help="also FD on Inception features (needs torch-fidelity and its weights)")
    parser.add_argument("--json", help="also write the reports to this JSON file")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from condiff.cli.common import check_output_path, check_range, check_seed, check_steps
    from condiff.device import pick_device
    from condiff.errors import CondiffError

    check_range("--num", args.num, 10, 10_000, "distances need at least 10 images per set; 500 is the default")
    check_steps(args.steps)
    check_seed(args.seed)
    options = call_options(args)
    if args.task == "all" and (args.model or args.data):
        option = "--model" if args.model else "--data"
        raise CondiffError(f"{option} needs a task: condiff eval unconditional|colorize|sketch2img --model DIR")
    if args.data and args.inception:
        raise CondiffError("--inception measures against held-out Nouns; leave it out with --data")
    if args.json:
        check_output_path(args.json, (".json",))

    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.features import load_feature_net
    from condiff.images import write_bytes_atomic

    tasks = list(TASKS.values()) if args.task == "all" else [TASKS[args.task]]
    models = {task.name: task.resolve_model(args.model) for task in tasks}  # a missing model fails before work
    settings = EvalSettings(num=args.num, steps=args.steps, scheduler=args.scheduler, precision=args.precision,
                            seed=args.seed, guidance=options.pop("guidance"), device=pick_device(args.device),
                            steering=options, data=args.data)
    net = None if args.data else load_feature_net()
    reports = []
    for task in tasks:
        report = task.evaluate(models[task.name], settings, net)
        if args.inception:
            from condiff.evaluation.inception import add_inception_distance

            add_inception_distance(report, models[task.name], settings)
        print(report.table(), end="\n\n", flush=True)
        reports.append(report)
    if args.json:
        from pathlib import Path

        from condiff.evaluation.report import reports_json

        text = reports_json(reports)
        write_bytes_atomic(args.json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"condiff: wrote {args.json}")
