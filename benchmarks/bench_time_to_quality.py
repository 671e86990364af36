"""Time to quality: the Fréchet distance training runs reach after 5, 15, 30 and 60 minutes.

    python benchmarks/bench_time_to_quality.py RUN [RUN ...] [--minutes 5 15 30 60] [--seconds-per-step S ...]
        [--step-times FILE] [--scheduler dpm] [--device cuda] [--json FILE]

Each RUN is a training folder whose checkpoints were kept (`--set train.keep_checkpoints=100
train.checkpoint_every=200`); `train.max_minutes` stops a run at a time budget. For every target the
last checkpoint written within it is scored with its EMA weights (DPM-Solver++ 20 steps or --scheduler, the
Nouns feature network, held-out references), so every run is measured the same way in one invocation.
Time is the run's own clock, or steps x a step time measured alone on the CPU (`--seconds-per-step`,
or `--step-times` from benchmarks/bench_defaults_sweep.py, by run folder name), which is how runs trained
on a shared machine or on a GPU are counted in CPU-minutes.
The runs compared in docs/benchmarks.md: recipes/unconditional.yaml, and recipes/bench-diffusers-defaults.yaml
(the same UNet with the diffusers unconditional example's defaults).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import describe

from condiff.config import load_recipe
from condiff.data.sources import build_dataset
from condiff.denoiser import Denoiser
from condiff.device import pick_device
from condiff.evaluation.evaluators import (
    EvalSettings,
    FeatureSpace,
    reference_rows,
)
from condiff.evaluation.features import load_feature_net
from condiff.evaluation.held_out import REFERENCE_SEED, held_out_nouns
from condiff.model import build_scheduler, build_unet
from condiff.palette import to_hex
from condiff.sampling import SAMPLERS, generate, make_sampler
from condiff.training.checkpoints import list_checkpoints, read_trainer_state
from condiff.training.from_recipe import data_palette
from condiff.training.trainer import recipe_as_trained

SETTINGS_SHOWN = ("train.lr", "train.batch_size", "train.warmup_steps", "train.lr_schedule", "train.ema_decay",
                  "train.min_snr_gamma", "scheduler.beta_schedule", "scheduler.prediction_type",
                  "scheduler.num_train_timesteps", "model.channels", "model.layers_per_block", "model.self_condition",
                  "model.palette_head")


def checkpoint_denoiser(recipe, checkpoint: Path) -> Denoiser:
    """The Denoiser an unconditional run's checkpoint trained: its recipe's model settings as the checkpoint
    trained them (`recipe_as_trained`), and with a palette head the checkpoint's palette (found in the data as
    in training for checkpoints that do not hold it)."""
    state = read_trainer_state(checkpoint)
    colors = state.get("palette") if recipe.model.palette_head else None
    if recipe.model.palette_head and not colors:
        found = data_palette(recipe, build_dataset(recipe.data))
        colors = None if found.colors is None else to_hex(found.colors)  # None: the Denoiser says there is none
    return Denoiser.from_settings({**recipe_as_trained(state)["model"], "condition_channels": [], "palette": colors})


def checkpoint_unet(run: Path, checkpoint: Path, sampler: str = "dpm"):
    """The checkpoint's Denoiser (`checkpoint_denoiser`), its EMA weights (or raw weights when the run had no
    EMA) in the run's UNet, its sampler and its recipe."""
    from diffusers.training_utils import EMAModel
    from safetensors.torch import load_file

    recipe = load_recipe(str(run / "recipe.yaml"))
    denoiser = checkpoint_denoiser(recipe, checkpoint)
    unet = build_unet(recipe.model, recipe.data.resolution, in_channels=denoiser.in_channels,
                      out_channels=denoiser.out_channels)
    unet.load_state_dict(load_file(checkpoint / "model.safetensors"))
    ema_file = checkpoint / "custom_checkpoint_0.pkl"
    if recipe.train.ema and ema_file.is_file():
        ema = EMAModel(unet.parameters())
        ema.load_state_dict(torch.load(ema_file, weights_only=True))  # tensors and numbers only
        ema.copy_to(unet.parameters())
    return denoiser, unet.eval(), make_sampler(build_scheduler(recipe.scheduler), sampler), recipe


def levels_off(samples: torch.Tensor, palette) -> dict[str, float]:
    """How far the samples' pixels are from the palette before any snapping: each pixel's distance to its
    nearest palette colour, counted as the largest of its 3 channel differences in 8-bit levels."""
    from condiff.images import to_uint8

    pixels = torch.from_numpy(to_uint8(samples)).reshape(-1, 1, 3).int()
    colors = torch.as_tensor(palette).reshape(1, -1, 3).int()
    distance = torch.cat([(chunk - colors).abs().amax(dim=2).amin(dim=1) for chunk in pixels.split(65536)])
    return {"on palette": float((distance == 0).float().mean()), "median levels off": float(distance.float().median()),
            "within 2 levels": float((distance <= 2).float().mean())}


def training_seconds(checkpoint: Path, seconds_per_step: float | None) -> float:
    """The run's own clock, or steps x a measured step time (for runs that shared their machine)."""
    state = read_trainer_state(checkpoint)
    return state["step"] * seconds_per_step if seconds_per_step else state["seconds"]


def pick(checkpoints: list[Path], minutes: float, seconds_per_step: float | None = None) -> Path | None:
    """The last checkpoint written within `minutes` of training (2 % slack for the save itself)."""
    within = [c for c in checkpoints if training_seconds(c, seconds_per_step) <= 60 * minutes * 1.02]
    reached = checkpoints and training_seconds(checkpoints[-1], seconds_per_step) >= 60 * minutes * 0.9
    return within[-1] if within and reached else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--seconds-per-step", type=float, nargs="+", metavar="S",
                        help="per run: count time as steps x S (measured alone) instead of the run's clock, "
                             "for runs that shared the machine; 0 keeps a run's clock")
    parser.add_argument("--step-times", help="JSON of benchmarks/bench_defaults_sweep.py step-times: step time "
                        "per run folder name")
    parser.add_argument("--scheduler", choices=SAMPLERS, default="dpm", help="sampler, 20 steps (default: dpm)")
    parser.add_argument("--device", help="where to sample (default: cuda when present)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = pick_device(args.device)
    net = load_feature_net()
    settings = EvalSettings(num=args.num, device=device, scheduler=args.scheduler)
    results = []
    per_step = args.seconds_per_step or [0.0] * len(args.runs)
    if args.step_times:
        known = json.loads(Path(args.step_times).read_text())["variants"]
        missing = [run for run in args.runs if Path(run).name not in known]
        if missing:
            parser.error(f"--step-times {args.step_times} has no step time for {', '.join(missing)}")
        per_step = [known[Path(run).name] for run in args.runs]
    if len(per_step) != len(args.runs):
        parser.error("--seconds-per-step needs one value per run")
    space = FeatureSpace(net, held_out_nouns(args.num, REFERENCE_SEED))
    reference = {row.name: row.metrics["FD"] for row in reference_rows(space, settings)}
    machine = describe(device)
    for run, seconds_per_step in zip(map(Path, args.runs), per_step, strict=True):
        checkpoints = list_checkpoints(run)
        row = {"run": str(run), "points": [], "seconds_per_step": seconds_per_step or None}
        for minutes in args.minutes:
            checkpoint = pick(checkpoints, minutes, seconds_per_step or None)
            if checkpoint is None:
                row["points"].append({"minutes": minutes, "FD": None})
                continue
            denoiser, unet, sampler, _ = checkpoint_unet(run, checkpoint, args.scheduler)
            samples = generate(denoiser, unet.to(device), sampler, settings.num, settings.steps,
                               seed=settings.seed).images
            scores = {**space.scores(samples, parts=True), **levels_off(samples, space.palette)}
            state = read_trainer_state(checkpoint)
            row["points"].append({"minutes": minutes, "step": state["step"], "seconds": state["seconds"],
                                  "counted_seconds": training_seconds(checkpoint, seconds_per_step or None), **scores})
            print(f"{run}: {minutes:g} min -> step {state['step']}, FD {scores['FD']:.2f}, on palette "
                  f"{scores['on palette']:.2%}, within 2 levels {scores['within 2 levels']:.1%}, median "
                  f"{scores['median levels off']:g} levels off, flat-area noise {scores['flat-area noise']:.2f}",
                  flush=True)
        flat = load_recipe(str(run / "recipe.yaml")).to_dict()
        row["settings"] = {key: flat.get(key.split(".")[0], {}).get(key.split(".")[1]) for key in SETTINGS_SHOWN}
        if flat["model"].get("palette_head") and checkpoints:  # older recipes lack these keys: as trained
            model = recipe_as_trained(read_trainer_state(checkpoints[-1]))["model"]
            row["settings"].update({f"model.{key}": model.get(key)
                                    for key in ("pixel_likelihood", "pixel_likelihood_until")})
        results.append(row)
        if args.json:  # after every run, so a run cut short keeps the ones before
            Path(args.json).write_text(json.dumps({"machine": machine, "num": args.num, "sampler": args.scheduler,
                                                   "runs": results,
                                                   "references": reference}, indent=2) + "\n")

    sampler = settings.describe()["sampler"]
    print(f"\nFD on the Nouns feature network, {args.num} images, sampler {sampler}, EMA weights")
    print(f"{'run':40}" + "".join(f"{f'{m:g} min':>22}" for m in args.minutes))
    for row in results:
        cells = [f"{p['FD']:.2f} (step {p['step']})" if p["FD"] is not None else "not reached" for p in row["points"]]
        print(f"{row['run']:40}" + "".join(f"{c:>22}" for c in cells))
    print("references: " + ", ".join(f"{name} {value:.2f}" for name, value in reference.items()))


if __name__ == "__main__":
    main()
