"""Training arms side by side, from their own `eval.json` (written by `train.eval_images` or `condiff eval
--json`): one Markdown row per arm with its model rows measured as the network alone (every sampling-time
step off), then the reference rows (truth, baselines, chance) of the first arm.

    python benchmarks/arms_table.py "label=outputs/own-colorize" "chroma=outputs/own-colorize-chroma" ...

Each arm's minutes of training come from its training_summary.json (resumes included) or, for the peer
loop, its peer.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ALONE = "the network alone"  # how eval.json's settings name the pass with every sampling-time step off


def network_alone(folder: Path) -> dict:
    reports = json.loads((folder / "eval.json").read_text())
    reports = reports if isinstance(reports, list) else [reports]
    return next((r for r in reports if ALONE in r["settings"].get("measured", "")), reports[-1])


def training_minutes(folder: Path) -> float | None:
    """condiff's runs: training_summary.json (resumes included); the peer loop: peer.json."""
    for name, key, scale in (("training_summary.json", "seconds", 60), ("peer.json", "minutes", 1)):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())[key] / scale
    return None


def cells(row: dict) -> dict[str, float]:
    return {key: value for key, value in row.items() if key not in ("name", "note") and isinstance(value, int | float)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arms", nargs="+", help="LABEL=FOLDER")
    args = parser.parse_args()
    arms = [(label, Path(folder)) for label, folder in (arm.split("=", 1) for arm in args.arms)]
    reports = [(label, folder, network_alone(folder)) for label, folder in arms]
    first = reports[0][2]
    models = [row for row in first["rows"] if row["name"].startswith("model")]
    metrics = list(cells(models[0]))
    columns = [f"{metric}{row['name'][len('model'):]}" for metric in metrics for row in models]
    print("| arm | minutes | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for label, folder, report in reports:
        rows = {row["name"]: cells(row) for row in report["rows"]}
        values = [rows[row["name"]].get(metric) for metric in metrics for row in models]
        minutes = training_minutes(folder)
        shown = " | ".join("" if v is None else f"{v:.4g}" for v in values)
        print(f"| {label} | {'' if minutes is None else f'{minutes:.0f}'} | {shown} |")
    for row in first["rows"]:
        if row["name"].startswith("model"):
            continue
        values = cells(row)
        shown = " | ".join(f"{values[metric]:.4g}" if metric in values else "" for metric in metrics for _ in models)
        print(f"| *{row['name']}* ({row.get('note', '')}) | | {shown} |")


if __name__ == "__main__":
    main()
