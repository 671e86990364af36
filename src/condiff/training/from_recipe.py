"""Assemble the trainer's parts from a recipe: data, UNet, noise schedule."""

from __future__ import annotations

from condiff.config import Recipe
from condiff.training.trainer import ConditionFn, Trainer, TrainResult


def build_parts(recipe: Recipe, extra_in_channels: int = 0):
    """(dataset, unet, scheduler) for a recipe; `extra_in_channels` widen the UNet for conditions."""
    from accelerate.utils import set_seed

    from condiff.data.sources import build_dataset
    from condiff.model import build_scheduler, build_unet, load_unet

    set_seed(recipe.train.seed)  # the UNet's initial weights come from the global RNG
    dataset = build_dataset(recipe.data)
    if recipe.model.init_from:
        unet = load_unet(recipe.model.init_from)
    else:
        unet = build_unet(recipe.model, recipe.data.resolution, extra_in_channels)
    return dataset, unet, build_scheduler(recipe.scheduler)


def train_recipe(recipe: Recipe, overwrite: bool = False, condition_fn: ConditionFn | None = None) -> TrainResult:
    dataset, unet, scheduler = build_parts(recipe)
    return Trainer(recipe, unet, scheduler, dataset, condition_fn=condition_fn, overwrite=overwrite).train()
