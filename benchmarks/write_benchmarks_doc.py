"""Write docs/benchmarks.md from the JSON the benchmark scripts wrote, each with the machine it ran on.

    python benchmarks/bench_training_throughput.py --json benchmarks/results/throughput.json
    python benchmarks/bench_sampling.py --json benchmarks/results/sampling.json
    python benchmarks/bench_time_to_quality.py RUN ... --json benchmarks/results/time_to_quality.json
    python benchmarks/bench_defaults_sweep.py step-times --json benchmarks/results/step_times.json
    python benchmarks/bench_denoising_precision.py MODEL ... --json benchmarks/results/denoising_precision.json
    bash benchmarks/gpu_session.sh        # on a GPU machine: benchmarks/results/gpu/*.json
    python benchmarks/write_benchmarks_doc.py

A result file that is missing leaves its section saying so. Two files are taken as they are:
benchmarks/results/PALETTE_AND_CONDITIONS.md (the palette and conditional-model sections: tables that
bench_palette.py, bench_colorize.py and bench_sketch_obedience.py print, copied with what they decided)
before the data section, and benchmarks/results/NOTES.md (how the numbers were taken, and what they
decided) at the end. Edit those files, not docs/benchmarks.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_training_levers import LEVERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def throughput_section(data: dict | None, command: str) -> list[str]:
    if not data:
        return [f"Not run yet: `{command}`."]
    lines = [f"Machine: {data['machine']}.", "",
             f"{data['steps']} steps of {data['batch']} images"
             + (f" after {data['warmup_steps']} untimed ones" if "warmup_steps" in data else "")
             + " with the UNet of `recipes/unconditional.yaml` "
             f"({data['step_gflop']:.1f} GFLOP per step, forward and backward).", "",
             "| loop | images/s | GFLOP/s | % of matmul | peak RSS | peak GPU memory |",
             "|---|---:|---:|---:|---:|---:|"]
    names = {"condiff": "condiff trainer", "plain": "plain diffusers loop (datasets + PIL transforms)",
             "condiff-bf16": "condiff trainer, `train.mixed_precision: bf16`",
             "condiff-compile-bf16": "condiff trainer, `train.compile: true`, `mixed_precision: bf16` (compiled)"}
    for kind in (kind for kind in names if kind in data):
        r = data[kind]
        name = names[kind]
        gpu = f"{r['peak_gpu_mb']:.0f} MB" if r.get("peak_gpu_mb") else "-"
        lines.append(f"| {name} | {r['img_per_s']:.1f} | {r['gflops']:.1f} | "
                     f"{100 * r['gflops'] / data['matmul_gflops']:.0f} % | {r['peak_rss_mb']:.0f} MB | {gpu} |")
    size = data.get("matmul_size", 2048)
    lines += [f"| float32 matmul {size}² (the ceiling) | | {data['matmul_gflops']:.1f} | 100 % | | |", "",
              f"**condiff / plain loop: {data['ratio']:.2f}×** the images per second."]
    if "condiff-bf16" in data:
        ratio = data["condiff-bf16"]["img_per_s"] / data["plain"]["img_per_s"]
        lines += ["", f"**condiff with `train.mixed_precision: bf16` / plain loop (float32): {ratio:.2f}×**."]
    if "condiff-compile-bf16" in data:
        compiled = data["condiff-compile-bf16"]
        ratio = compiled["img_per_s"] / data["plain"]["img_per_s"]
        pays = compiled.get("pays_after_steps")
        lines += ["", f"**condiff with `train.compile: true` and `mixed_precision: bf16` / plain loop (float32): "
                  f"{ratio:.2f}×** once compiled; the first run's cold compile took {compiled['compile_s']:.0f} s"
                  + (f", paid back after {pays:.0f} steps." if pays is not None else ", never paid back.")]
    return lines


def levers_section(data: dict | None, command: str) -> list[str]:
    if not data:
        return [f"Not run yet: `{command}`."]
    lines = [f"Machine: {data['machine']}.", "",
             f"One training step of {data['batch']} images (forward, backward, AdamW), mean of {data['steps']} "
             "after two warm-up steps; `pays after` = the warm-up (compilation) it adds over its step-time saving.",
             "", "| lever | s/step | × eager float32 | warm-up | pays after |", "|---|---:|---:|---:|---:|"]
    for lever in (lever for lever in LEVERS if lever in data):  # files written before a lever was added lack it
        r = data[lever]
        pays = ("(the baseline)" if lever == "eager" else "never" if r["pays_after_steps"] is None
                else f"{r['pays_after_steps']:.0f} steps")
        lines.append(f"| {lever} | {r['step_s']:.3f} | {r['speedup']:.2f}× | {r['warmup_s']:.1f} s | {pays} |")
    return lines


def sampling_throughput_section(data: dict | None, command: str) -> list[str]:
    if not data:
        return [f"Not run yet: `{command}`."]
    rows = [f"| {row['batch']} | {row['row']} | {row['images_per_s']:.1f} | {row['ratio_to_ddpm_pipeline']:.2f}× |"
            for row in data["results"]]
    what = (f"`DDPMScheduler`, {data['steps']} steps, the UNet of `recipes/unconditional.yaml` with a 3-channel "
            f"output; each row the median of {data['repeats']} calls, the rows taking turns.")
    return [f"Machine: {data['machine']}.", "", what, "", "| batch | sampler | images/s | × DDPMPipeline |",
            "|---:|---|---:|---:|", *rows]


def sampling_section(data: dict | None, command: str) -> list[str]:
    if not data:
        return [f"Not run yet: `{command}`."]
    repeats = data.get("repeats", 1)
    drawn = f"{repeats} disjoint sets of {data['num']} images" if repeats > 1 else f"{data['num']} images"
    first = data["results"][0]
    against = "vs full DDPM" if first["sampler"].startswith("ddpm-") else f"vs {first['sampler']}"
    lines = [f"Machine: {data['machine']}.", "",
             f"`{Path(data['model']).name}` model, {drawn} per sampler, FD on the Nouns feature network "
             "(lower is better)" + (", the mean over the sets with each set's FD beside it." if repeats > 1 else "."),
             "", f"| sampler | ms per image | FD | {against} | KID | glasses recognised |"
             + (" FD per set |" if repeats > 1 else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---|" if repeats > 1 else "")]
    flatness = "flat-area noise" in first  # measured since the column was added
    if flatness:
        lines[-2] += " flat-area noise (snapped) |"
        lines[-1] += "---:|"
    full = first["FD"]
    for r in data["results"]:
        per_set = " " + " / ".join(f"{fd:.1f}" for fd in r["FD_per_set"]) + " |" if repeats > 1 else ""
        versus = f"{100 * (r['FD'] / full - 1):+.1f} %"
        lines.append(f"| {r['sampler']} | {r['ms_per_image']:.2f} | {r['FD']:.2f} | {versus} | {r['KID']:.4f} | "
                     f"{r['glasses ok']:.0%} |{per_set}"
                     + (f" {r['flat-area noise']:.2f} ({r['flat-area noise snapped']:.2f}) |" if flatness else ""))
    if data.get("references"):
        lines += ["", "References in the same run: " + ", ".join(f"{k} {v:.2f}" for k, v in data["references"].items())
                  + (f"; held-out Nouns' flat-area noise {data['held_out_flat_area_noise']:.2f}" if flatness else "")]
    if data.get("fewest_within_10pct"):
        lines += ["", f"Fewest steps within 10 % of full DDPM's FD: **{data['fewest_within_10pct']}**."]
    return lines


def fd_cell(point: dict) -> str:
    """FD with its step, and the CPU-minutes actually counted when a run stopped short of the target."""
    if point.get("FD") is None:
        return "not reached"
    counted = point.get("counted_seconds", 60 * point["minutes"]) / 60
    short = f", {counted:.0f} min" if counted < 0.95 * point["minutes"] else ""
    return f"{point['FD']:.0f} (step {point['step']}{short})"


def time_table(files: list[dict], names: bool) -> list[str]:
    minutes = sorted({p["minutes"] for data in files for run in data["runs"] for p in run["points"]})
    lines = ["| run | " + " | ".join(f"{m:g} min" for m in minutes) + " |", "|---|" + "---:|" * len(minutes)]
    for data in files:
        for run in data["runs"]:
            by_minutes = {p["minutes"]: p for p in run["points"]}
            cells = [fd_cell(by_minutes[m]) if m in by_minutes else "" for m in minutes]
            name = Path(run["run"]).name if names else run["run"]
            sampler = f" ({data['sampler']})" if data.get("sampler", "dpm") != "dpm" else ""  # scored another way
            lines.append(f"| `{name}`{sampler} | " + " | ".join(cells) + " |")
    return lines


def time_to_quality_section(files: list[dict]) -> list[str]:
    if not files:
        return ["Not run yet: see `benchmarks/bench_time_to_quality.py`."]
    lines = [f"Machine: {files[0]['machine']}.", "",
             f"FD after N CPU-minutes of training ({files[0]['num']} images, `dpm` (DPM-Solver++) 20 steps unless "
             "the row names another sampler, EMA weights; lower is better).", "", *time_table(files, names=False), "",
             "Settings of each run:", ""]
    for data in files:
        # A run trained elsewhere says where; its time is counted as steps x its seconds per step.
        elsewhere = f" (trained and scored on {data['machine']})" if data["machine"] != files[0]["machine"] else ""
        for run in data["runs"]:
            settings = ", ".join(f"{k.split('.')[1]} {v}" for k, v in run["settings"].items() if v is not None)
            counted = f"; time counted as steps x {run['seconds_per_step']} s" if run.get("seconds_per_step") else ""
            lines.append(f"- `{run['run']}`: {settings}{elsewhere}{counted}")
    lines += ["", "References in the same run: " +
              ", ".join(f"{k} {v:.2f}" for k, v in files[0]["references"].items())]
    return lines


def precision_section(data: dict | None) -> list[str]:
    if not data:
        return ["Not run yet: `python benchmarks/bench_denoising_precision.py --json "
                "benchmarks/results/denoising_precision.json`."]
    lines = [f"Machine: {data['machine']}.", "",
             f"{data['num']} held-out Nouns noised at timestep t (fixed noise); each model's predicted clean image "
             "against the truth, in 8-bit levels: the share of pixels exactly right, within 2 levels of the palette, "
             "and the median distance to it. \"no denoising\" is the noisy image rescaled (x_t / sqrt(alpha_bar)).", ""]
    for model in data["models"]:
        lines += [f"`{model['model']}`:", "",
                  "| t | noise | exact | within 2 levels | median off | no denoising: exact | within 2 | median off |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in model["denoising"]:
            m, n = row["model"], row["no denoising"]
            lines.append(f"| {row['t']} | {row['noise']:.3f} | {m['exact']:.1%} | {m['within 2 levels']:.1%} | "
                         f"{m['median levels off']:g} | {n['exact']:.1%} | {n['within 2 levels']:.1%} | "
                         f"{n['median levels off']:g} |")
        if model["samples"]:
            lines += ["", "Its samples, before any snapping: " + "; ".join(
                f"{r['sampler']} {r['on palette']:.2%} on the palette, {r['within 2 levels']:.1%} within 2 levels, "
                f"median {r['median levels off']:g} off" for r in model["samples"]) + "."]
        lines.append("")
    return lines[:-1]


def sweep_section(rounds: list[dict], step_times: dict | None) -> list[str]:
    if not rounds or not step_times:
        return ["Not run yet: see `benchmarks/bench_defaults_sweep.py`."]
    lines = [f"Trained on: {rounds[0]['machine']}; every variant is given the steps that cost the named "
             f"CPU-minutes on {step_times['machine']} (step times below), so the table compares "
             "CPU-minutes, not GPU-minutes. Each round ran its variants side by side until a wall-clock limit, "
             "so the longest budgets were not reached.", ""]
    for number, data in enumerate(rounds, 1):
        lines += [f"Round {number} ({data['num']} images, DPM-Solver++ 20 steps, EMA weights; lower is better):",
                  "", *time_table([data], names=True), ""]
    lines += ["CPU seconds per training step (measured alone on the 2-core machine):", "",
              "| model and batch | s/step |", "|---|---:|"]
    derived = step_times.get("derived", {})
    lines += [f"| {key} | {value:.3f}{' (derived)' if key in derived else ''} |"
              for key, value in step_times["cost_seconds_per_step"].items()]
    if derived:  # step times computed rather than measured: say how
        lines += ["", *(f"- derived, {key}: {how}" for key, how in derived.items())]
    return lines


SHIPPED = ROOT / "src" / "condiff" / "models"


def shipped_models_section() -> list[str]:
    """The shipped conditional models' own rows from their eval.json (scripts/ship_model.py): as the commands
    run them and the network alone, every sampling-time step off (issue 40)."""
    lines = ["Each shipped conditional model measured by its card (`scripts/ship_model.py`: `condiff eval` on 500 "
             "held-out Nouns, DPM-Solver++ 20 steps), twice: as the commands run it (every sampling-time step on: "
             "the palette snap, the kept lightness or silhouette) and the network alone (`--palette off "
             "--silhouette off --lightness off`). The difference is what steering does.", ""]
    for name, columns in (("colorize", ("PSNR", "SSIM", "luma err", "colourful", "glasses exact", "FD", "on palette")),
                          ("sketch2img", ("silhouette IoU", "edge F1", "FD", "glasses ok", "on palette"))):
        path = SHIPPED / name / "eval.json"
        reports = json.loads(path.read_text()) if path.is_file() else []
        measured = [r for r in reports if "measured" in r["settings"]]
        if not measured:
            lines += [f"{name}: not measured both ways yet (`python scripts/ship_model.py --reevaluate {name}`).", ""]
            continue
        lines += [f"**{name}**", "", "| measured | row | " + " | ".join(columns) + " |",
                  "|---|---|" + "---:|" * len(columns)]
        for report in measured:
            for row in report["rows"]:
                if row["name"].startswith("model"):
                    cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else "-" for c in columns]
                    lines.append(f"| {report['settings']['measured']} | {row['name']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main() -> None:
    notes = (RESULTS / "NOTES.md").read_text() if (RESULTS / "NOTES.md").is_file() else ""
    by_hand = RESULTS / "PALETTE_AND_CONDITIONS.md"
    conditional = by_hand.read_text().rstrip() + "\n" if by_hand.is_file() else ""
    time_files = [data for data in (load("time_to_quality"), load("time_to_quality_30min"),
                                    load("time_to_quality_3000_steps"), load("time_to_quality_selfcond"),
                                    load("time_to_quality_wide"), load("time_to_quality_palette_head"),
                                    load("time_to_quality_palette_likelihood"),
                                    load("time_to_quality_palette_head_seed1"),
                                    load("time_to_quality_palette_likelihood_seed1"),
                                    load("time_to_quality_palette_fade100"),
                                    load("time_to_quality_logsnr")) if data]
    rounds = [data for data in (load("gpu/defaults_sweep"), load("gpu/defaults_sweep_round2"),
                                load("gpu/defaults_sweep_round3")) if data]
    text = "\n".join([
        "# Benchmarks", "",
        "Written by `benchmarks/write_benchmarks_doc.py` from the JSON files in `benchmarks/results/`; "
        "each number was measured by the script named in its section, on the machine named with it.", "",
        "## Training throughput (`benchmarks/bench_training_throughput.py`)", "",
        "### CPU", "",
        *throughput_section(load("throughput"), "python benchmarks/bench_training_throughput.py --device cpu "
                            "--bf16 --compile --json benchmarks/results/throughput.json"), "",
        "### CPU, batch 32", "",
        *throughput_section(load("throughput_batch32"), "python benchmarks/bench_training_throughput.py --device cpu "
                            "--bf16 --compile --batch 32 --json benchmarks/results/throughput_batch32.json"), "",
        "### GPU", "",
        *throughput_section(load("gpu/throughput"), "bash benchmarks/gpu_session.sh"), "",
        "### GPU, batch 256", "",
        *throughput_section(load("gpu/throughput_batch256"), "ONLY_THROUGHPUT=1 bash benchmarks/gpu_session.sh"), "",
        "## Training levers on the UNet step (`benchmarks/bench_training_levers.py`)", "",
        "### CPU", "",
        *levers_section(load("levers"), "python benchmarks/bench_training_levers.py --device cpu "
                        "--json benchmarks/results/levers.json"), "",
        "### GPU, batch 256", "",
        *levers_section(load("gpu/levers_batch256"), "bash benchmarks/gpu_session.sh"), "",
        "## Samplers (`benchmarks/bench_sampling.py`)", "",
        "### GPU (3 × 1000 images: the FDs that chose the default)", "",
        *sampling_section(load("gpu/sampling"), "python benchmarks/bench_sampling.py --num 1000 --repeats 3"), "",
        "### CPU (500 images, one draw; times per image on the 2-core machine)", "",
        *sampling_section(load("sampling"), "python benchmarks/bench_sampling.py --device cpu"), "",
        "### CPU, the default's candidates (3 × 500 images each)", "",
        *sampling_section(load("sampling_default"), "python benchmarks/bench_sampling.py --device cpu --repeats 3 "
                          "--samplers dpm-20 dpm-logsnr-20 --json benchmarks/results/sampling_default.json"), "",
        "### CPU, the default sampler with the UNet in bfloat16 (`--precision`; 3 × 500 images each)", "",
        "For FD only: these two ran on one thread beside training, so their times are not comparable; the "
        "sampling throughput section below times float32 against bfloat16.", "",
        *sampling_section(load("sampling_float32_3x500"), "python benchmarks/bench_sampling.py --device cpu "
                          "--repeats 3 --samplers dpm-20 --json benchmarks/results/sampling_float32_3x500.json"), "",
        *sampling_section(load("sampling_bfloat16_3x500"), "python benchmarks/bench_sampling.py --device cpu "
                          "--repeats 3 --samplers dpm-20 --precision bfloat16 "
                          "--json benchmarks/results/sampling_bfloat16_3x500.json"), "",
        "## Sampling throughput (`benchmarks/bench_sampling_throughput.py`)", "",
        *sampling_throughput_section(load("sampling_throughput"), "python benchmarks/bench_sampling_throughput.py "
                                     "--device cpu --json benchmarks/results/sampling_throughput.json"), "",
        "## Time to quality on 2 CPU cores (`benchmarks/bench_time_to_quality.py`)", "",
        *time_to_quality_section(time_files), "",
        "## Denoising precision (`benchmarks/bench_denoising_precision.py`)", "",
        *precision_section(load("denoising_precision")), "",
        "## Choosing the defaults (`benchmarks/bench_defaults_sweep.py`)", "",
        *sweep_section(rounds, load("step_times")), "",
        conditional,
        "## The shipped models: the network alone and as the commands run it", "",
        *shipped_models_section(),
        "## Data (`benchmarks/bench_nouns_render.py`)", "",
        "On 2 CPU cores a DataLoader's batch of 64 Nouns costs well under 1 % of one training step. On the H200 "
        "a step takes about 40 ms, and rendering the Nouns one by one (about 5.5 ms a batch) was a real cost; "
        "the DataLoader now fetches each batch at once (see the notes below).", "",
        notes,
    ])
    (ROOT / "docs" / "benchmarks.md").write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {ROOT / 'docs' / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
