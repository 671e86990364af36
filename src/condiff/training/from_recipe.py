"""Assemble the trainer's parts from a recipe: data, conditions, UNet, noise schedule."""

from __future__ import annotations

from pathlib import Path

from condiff.config import Recipe
from condiff.training.trainer import Trainer, TrainResult

SHIPPED_PREFIX = "shipped:"  # model.init_from: shipped:unconditional names a model that ships with condiff


def resolve_init_from(init_from: str | None) -> str | None:
    """`model.init_from` as a folder or Hub id: `shipped:NAME` is the shipped model of task NAME."""
    if not init_from or not init_from.startswith(SHIPPED_PREFIX):
        return init_from
    from condiff.errors import RecipeError
    from condiff.tasks import TASKS

    name = init_from[len(SHIPPED_PREFIX):]
    if name not in TASKS:
        raise RecipeError(f"model.init_from {init_from}: no shipped model {name!r}; shipped models are "
                          + ", ".join(f"{SHIPPED_PREFIX}{task}" for task in TASKS))
    return TASKS[name].resolve_model(None)


def _initial_unet(recipe: Recipe, conditions, head=None):
    """A fresh UNet, or a pretrained one (widened with zero weights for new condition channels and for
    self-conditioning); with a palette `head`, one output per palette colour."""
    from condiff.model import IMAGE_CHANNELS, build_unet, input_channels, widen_unet_input
    from condiff.model_folder import load_unet

    init_from = resolve_init_from(recipe.model.init_from)
    if init_from and not recipe.model.init_required and not Path(init_from).expanduser().exists():
        print(f"condiff: {init_from} does not exist (model.init_required: false); training from scratch")
        init_from = None
    out_channels = head.channels if head is not None else IMAGE_CHANNELS
    if not init_from:
        return build_unet(recipe.model, recipe.data.resolution, conditions.channels, out_channels)
    from condiff.errors import CondiffError
    from condiff.model_folder import saved_self_condition

    unet = load_unet(init_from)
    if unet.config.out_channels != out_channels:
        wanted = (f"a palette head needs {out_channels}, one per colour of this data's palette" if head is not None
                  else "set model.palette_head: true (it keeps that model's palette), or start from another model")
        raise CondiffError(f"model.init_from {init_from}: its UNet outputs {unet.config.out_channels} channels; "
                           f"{wanted}")
    self_condition = recipe.model.self_condition
    have = unet.config.in_channels
    wanted = input_channels(conditions.channels, self_condition)
    if saved_self_condition(init_from):  # its last channels are its own estimate: nothing can follow them
        if self_condition and have == wanted:
            return unet
        raise CondiffError(f"model.init_from {init_from} is self-conditioned; set model.self_condition: true "
                           "and keep the conditions it was trained with")
    if have == wanted and not self_condition:
        return unet
    # New channels start at zero weight after the old ones: new conditions, then self-conditioning's.
    if have == IMAGE_CHANNELS or (have <= input_channels(conditions.channels, False)
                                  and _channels_extend(init_from, conditions)):
        return widen_unet_input(unet, wanted - have)
    raise CondiffError(f"model.init_from {init_from}: its UNet takes {have} input channels, but the image and "
                       f"conditions need {wanted}; start from an unconditional model, one trained with the "
                       "same conditions, or one whose conditions this recipe's begin with")


def _channels_extend(init_from: str, conditions) -> bool:
    """Whether the recipe's condition channels begin with those of the model in `init_from`, so that new
    channels can be added after them: the same conditions in the same order, then new ones, the last of
    the old ones perhaps with more channels (a setting that adds one, such as sketch `fill`)."""
    from condiff.model_folder import saved_conditions

    old = saved_conditions(init_from)
    if old is None or old.names != conditions.names[: len(old.names)]:
        return False
    counts = [encoder.num_channels for encoder in conditions.encoders[: len(old.names)]]
    old_counts = [encoder.num_channels for encoder in old.encoders]
    return counts[:-1] == old_counts[:-1] and counts[-1] >= old_counts[-1]


def build_parts(recipe: Recipe, dataset=None, palette=None):
    """(dataset, unet, scheduler, conditions) for a recipe; a palette head's outputs follow the data's
    palette. `dataset` and `palette` (`data_palette`'s) are built and found here unless given."""
    import torch
    from accelerate.utils import set_seed

    from condiff.conditions.stack import ConditionStack
    from condiff.data.sources import build_dataset
    from condiff.model import build_scheduler

    conditions = ConditionStack(conditions=[spec.to_dict() for spec in recipe.conditions])
    set_seed(recipe.train.seed)  # the UNet's initial weights come from the global RNG
    dataset = dataset if dataset is not None else build_dataset(recipe.data)
    head = None
    if recipe.model.palette_head:
        from condiff.palette_head import head_for

        check_warm_started_likelihood(recipe)
        with torch.random.fork_rng(devices=[]):  # the same initial weights as without the head
            head = head_for(palette if palette is not None else data_palette(recipe, dataset))
    unet = _initial_unet(recipe, conditions, head)
    return dataset, unet, build_scheduler(recipe.scheduler), conditions


def warm_started_head(recipe: Recipe) -> dict | None:
    """The palette head of the model a palette-head recipe starts from (model_folder.saved_palette_head), or
    None: a warm start goes on with that model's palette (its outputs are those colours, in that order), and
    the recipe must match its pixel likelihood (`check_warm_started_likelihood`)."""
    from condiff.model_folder import saved_palette_head

    if not recipe.model.palette_head or not recipe.model.init_from:
        return None
    return saved_palette_head(resolve_init_from(recipe.model.init_from))


def check_warm_started_likelihood(recipe: Recipe) -> None:
    """A one-line error when a palette-head recipe starts from a head trained with another pixel likelihood:
    its UNet learnt the rest of the odds beside that likelihood, so adding it where the model did not (or not
    adding it) counts each pixel's evidence twice (or not at all)."""
    import json

    from condiff.errors import RecipeError

    started = warm_started_head(recipe)
    if started is None:
        return
    shown = json.dumps  # as YAML writes them: true, false, null, 100
    # The fade means nothing without the likelihood: only a head with it must match the other's fade.
    keys = ("pixel_likelihood", "pixel_likelihood_until") if started["pixel_likelihood"] else ("pixel_likelihood",)
    for key in keys:
        wanted, have = getattr(recipe.model, key), started[key]
        if wanted != have:
            raise RecipeError(f"model.{key}: {shown(wanted)}, but model.init_from {recipe.model.init_from}'s palette "
                              f"head was trained with {shown(have)}; set model.{key}: {shown(have)} to go on from it")


def data_palette(recipe: Recipe, dataset):
    """The palette of the first images of the data, as data.palette and data.palette_size ask; a palette head
    warm-started from another keeps that one's palette (`warm_started_head`)."""
    from itertools import islice

    import numpy as np

    from condiff.palette import SAMPLE_IMAGES, FoundPalette, find_palette, from_hex

    started = warm_started_head(recipe)
    if started is not None:
        frequencies = started["palette_frequencies"]
        return FoundPalette(from_hex(started["palette"]),
                            f"palette: the {len(started['palette'])} colours of {recipe.model.init_from}'s palette "
                            "head (model.init_from)", None if frequencies is None else np.asarray(frequencies))
    if recipe.data.palette == "off":
        return find_palette([], "off")
    items = (dataset[i] for i in range(min(len(dataset), SAMPLE_IMAGES))) if hasattr(dataset, "__len__") \
        else islice(iter(dataset), SAMPLE_IMAGES)
    return find_palette((item["image"] for item in items), recipe.data.palette, recipe.data.palette_size)


def train_recipe(recipe: Recipe, overwrite: bool = False, device: str | None = None) -> TrainResult:
    from condiff.data.sources import build_dataset

    dataset = build_dataset(recipe.data)
    palette = data_palette(recipe, dataset)  # found once: said and saved by the trainer, and a head's outputs
    dataset, unet, scheduler, conditions = build_parts(recipe, dataset, palette)
    return Trainer(recipe, unet, scheduler, dataset, conditions=conditions, palette=palette,
                   overwrite=overwrite, device=device).train()
