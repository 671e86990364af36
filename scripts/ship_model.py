"""Copy a trained run into the package as a shipped model: fp16 safetensors and a model card.

    python scripts/ship_model.py outputs/unconditional unconditional [--num 500]
    python scripts/ship_model.py --reevaluate colorize [--num 500]

Writes src/condiff/models/NAME/ (the diffusers pipeline folder with the UNet in fp16) and its
README.md: the recipe, steps, wall time, and `condiff eval` run on the shipped (fp16) weights as the
commands run it and the network alone (every sampling-time step off). --reevaluate measures a shipped model again and
replaces only its card's evaluation section and eval.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from condiff.evaluation.evaluators import EvalSettings, as_run_and_alone
from condiff.evaluation.report import fenced_tables, reports_json
from condiff.model_card import palette_head_note
from condiff.model_folder import load_pipeline, save_model, saved_denoiser
from condiff.sampling import DEFAULT_SAMPLER_STEPS
from condiff.tasks import TASKS

LIMIT_MB = 10
ROOT = Path(__file__).resolve().parent.parent


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def write_fp16(run: Path, target: Path) -> None:
    pipeline = load_pipeline(run)
    with tempfile.TemporaryDirectory() as tmp:
        unet = pipeline.unet.to(torch.float16)  # diffusers notes a .to() cast; the UNet has no fp32-only modules
        save_model(Path(tmp) / "model", unet, pipeline.scheduler, pipeline.conditions, pipeline.denoiser)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / "model", target)


EVALUATION = "## Evaluation (`condiff eval`, on these fp16 weights)"


def saved_palette(target: Path) -> list | None:
    """The palette ("#rrggbb") the folder's denoiser records, or None."""
    denoiser = saved_denoiser(target)
    return None if denoiser is None else denoiser.config.palette


def palette_file(target: Path) -> str:
    """Where the folder records its palette: its denoiser component, or (saved before there was one)
    model_index.json."""
    return "denoiser/config.json" if (target / "denoiser" / "config.json").is_file() else "model_index.json"


def evaluate(task, target: Path, num: int, steps: int) -> list:
    """`condiff eval` of the shipped folder as the commands run it (every sampling-time step at its default)
    and the network alone (every one off)."""
    reports = as_run_and_alone(task, str(target.relative_to(ROOT)), EvalSettings(num=num, steps=steps))
    for report in reports:
        print(report.table(), flush=True)
    return reports


def evaluation_section(reports, target: Path) -> str:
    colors = saved_palette(target)
    palette = (f"the training data's {len(colors)} colours (`palette` in {palette_file(target)})" if colors
               else "none")
    about = (f"Palette: {palette}. The first table samples as the commands do by default (every sampling-time step "
             "on: the palette snap, the silhouette a drawing fixes, the gray input's lightness, where the model has "
             "them); the second is the network alone, every one of them off (`--palette off --silhouette off "
             "--lightness off`).\n\n")
    return EVALUATION + "\n\n" + about + fenced_tables(reports) + "\n\n"


def head_section(target: Path) -> str:
    """The card's paragraph on a palette head (condiff.model_card.palette_head_note), or nothing."""
    denoiser = saved_denoiser(target)
    if denoiser is None or denoiser.head is None:
        return ""
    return palette_head_note(denoiser.config.pixel_likelihood, denoiser.config.pixel_likelihood_until) + "\n\n"


def model_card(name: str, run: Path, reports, size_mb: float) -> str:
    summary = json.loads((run / "training_summary.json").read_text())
    recipe = (run / "recipe.yaml").read_text()
    return (
        f"# condiff shipped model: {name}\n\n{TASKS[name].description}. Trained on the built-in Nouns (CC0 artwork, "
        "see `condiff/data/NOTICE.md`) on 2 CPU cores; weights stored as fp16 safetensors "
        f"({size_mb:.1f} MB), computed in float32.\n\n"
        f"- steps: {summary['steps']}\n- wall time: {summary['seconds'] / 60:.0f} min "
        "(on a shared 2-core machine)\n"
        f"- final training loss: {summary['final_loss']:.4f}\n\n"
        + head_section(TASKS[name].shipped_folder)
        + evaluation_section(reports, TASKS[name].shipped_folder) +
        "## Recipe (every key resolved)\n\n```yaml\n" + recipe + "```\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="a finished training run folder")
    parser.add_argument("name", choices=tuple(TASKS))
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLER_STEPS)
    parser.add_argument("--reevaluate", action="store_true", help="measure the shipped model again (no run)")
    args = parser.parse_args()
    task = TASKS[args.name]
    target = task.shipped_folder
    if args.reevaluate:
        reports = evaluate(task, target, args.num, args.steps)
        card = (target / "README.md").read_text(encoding="utf-8")
        before, rest = card.split(EVALUATION, 1)
        after = rest[rest.index("\n## "):].lstrip("\n")
        section = evaluation_section(reports, target)
        (target / "README.md").write_text(before + section + after, encoding="utf-8")
    else:
        if not args.run:
            parser.error("give the run folder to ship, or --reevaluate")
        run = Path(args.run)
        write_fp16(run, target)
        size = folder_mb(target)
        if size > LIMIT_MB:
            raise SystemExit(f"{target}: {size:.1f} MB, over the {LIMIT_MB} MB limit for shipped models")
        reports = evaluate(task, target, args.num, args.steps)
        (target / "README.md").write_text(model_card(args.name, run, reports, size), encoding="utf-8")
    (target / "eval.json").write_text(reports_json(reports), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
