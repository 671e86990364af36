"""Does the condition-use gap tell a model that reads its condition from one that cannot?

Trains two colorize models side by side, the same recipe, seed and steps (recipes/colorize.yaml,
warm-started from the shipped unconditional model, shortened): one given the true grayscale image, one given
a "condition" of random noise that says nothing about the image (a plugin defined here, one channel like
grayscale). Each run's last gap is read from its model card's summary; the shipped colorize and sketch2img
models are measured on held-out Nouns the same way. Expected: a clear gap for the grayscale run and the
shipped models, about 0 for the noise run.

    OMP_NUM_THREADS=2 python benchmarks/bench_condition_use.py --steps 200 --out /tmp/condition_use
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers.configuration_utils import register_to_config

from condiff import ConditionEncoder, register_condition
from condiff.conditions.base import prepare_input
from condiff.config import apply_overrides, read_recipe_dict, recipe_from_dict
from condiff.evaluation.held_out import INPUT_SEED, held_out_nouns
from condiff.model_folder import load_pipeline
from condiff.tasks import MODELS_ROOT
from condiff.training.condition_use import ConditionUseProbe
from condiff.training.from_recipe import train_recipe

ROOT = Path(__file__).parents[1]


@register_condition("bench_noise")
class NoiseCondition(ConditionEncoder):
    """One channel of noise, independent of the image: nothing in it can be learned."""

    channels = 1

    @register_to_config
    def __init__(self) -> None:
        super().__init__()

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        return torch.rand(images.shape[0], 1, *images.shape[2:], device=images.device) * 2 - 1

    def encode_input(self, image, resolution: int) -> torch.Tensor:
        return self.encode_training(prepare_input(image, resolution))


def shipped_gap(task: str) -> dict[str, float]:
    pipeline = load_pipeline(MODELS_ROOT / task)
    clean = held_out_nouns(8, INPUT_SEED, pipeline.resolution)
    torch.manual_seed(0)
    condition = pipeline.conditions.encode_training(clean, apply_dropout=False)
    probe = ConditionUseProbe(pipeline.denoiser, pipeline.scheduler, clean, condition, about="held-out Nouns")
    return probe.summary(probe.measure(pipeline.unet.float()))


def trained_gap(condition: str, steps: int, out: Path) -> dict[str, float]:
    overrides = [f"train.output_dir={out / condition}", f"train.max_steps={steps}", "train.sample_every=0",
                 f"train.checkpoint_every={steps}", f"train.log_every={max(steps // 10, 1)}",
                 "train.tensorboard=false", "data.size=5000", "train.warmup_steps=20"]
    values = apply_overrides(read_recipe_dict(ROOT / "recipes" / "colorize.yaml"), overrides)
    values["conditions"] = [{"name": condition, "dropout": 0.1}]
    train_recipe(recipe_from_dict(values), overwrite=True)
    return json.loads((out / condition / "training_summary.json").read_text())["condition_use"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps of each run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/condition_use"), help="where the runs go")
    args = parser.parse_args()
    rows = {f"shipped {task}": shipped_gap(task) for task in ("colorize", "sketch2img")}
    for condition in ("grayscale", "bench_noise"):
        rows[f"colorize recipe, {args.steps} steps, condition {condition}"] = trained_gap(condition, args.steps,
                                                                                           args.out)
    print("\n| model | images | " + " | ".join(band for band, *_ in rows["shipped colorize"]["bands"])
          + " | mean gap |")
    print("|---|---|" + "---|" * (len(rows["shipped colorize"]["bands"]) + 1))
    for name, use in rows.items():
        gaps = " | ".join(f"{gap:.4f}" for *_, gap in use["bands"])
        print(f"| {name} | {use['on']} | {gaps} | {use['gap']:.4f} |")


if __name__ == "__main__":
    main()
