"""`condiff app`: a local web app with Generate, Colorize, Sketch and Any-model tabs (Gradio, `condiff[app]`)."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "app", help="start a local web app: generate, colorize, sketch to image, any conditional model",
        description="Start a web app in the browser with four tabs: Generate (an unconditional model), "
                    "Colorize (a model trained on 'grayscale'), Sketch (a model trained on 'sketch') and Any "
                    "model (every conditional model, one input per condition, as condiff generate). It uses "
                    "the models shipped with condiff, plus every folder given with --model, each in the tabs "
                    "it fits. Needs the app extra: pip install \"condiff[app]\".")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="a model folder written by `condiff train`; repeat for several")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; "
                             "0.0.0.0 opens the app, which has no login, to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--no-shipped", action="store_true", help="use only the --model folders")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import os
    import tempfile
    from pathlib import Path

    from condiff.cli.common import check_range

    check_range("--port", args.port, 1, 65535, "a TCP port")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: nothing sent anywhere
    # Everything the app writes (its GIFs, Gradio's copies of uploads and results) goes into one folder
    # that is removed on every exit: Ctrl-C, SIGTERM (which condiff.cli.main turns into Ctrl-C), an error.
    with tempfile.TemporaryDirectory(prefix="condiff-app-", ignore_cleanup_errors=True) as work:
        os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(work, "gradio"))  # read when gradio is imported
        serve_models(args, Path(work))


def serve_models(args: argparse.Namespace, work) -> None:
    from condiff.errors import CondiffError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CondiffError('the app needs Gradio, which is not installed: pip install "condiff[app]"') from None

    from condiff.app.models import find_models
    from condiff.app.ui import serve
    from condiff.device import pick_device

    catalog = find_models(args.model, pick_device(args.device), shipped=not args.no_shipped)
    if not catalog.models:
        why = "no --model was given" + ("" if args.no_shipped else " and the shipped models are not installed")
        raise CondiffError(f"no models: {why}; train one (condiff train recipes/quickstart.yaml) "
                           "and pass --model outputs/quickstart")
    for model in catalog.models:
        print(f"condiff: model {model.label}")
    serve(catalog, args.host, args.port, work)
