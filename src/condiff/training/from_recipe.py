"""Assemble the trainer's parts from a recipe: data, conditions, the Denoiser, UNet, noise schedule."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate.utils import set_seed

from condiff.conditions.stack import ConditionStack
from condiff.config import Recipe
from condiff.denoiser import CHROMA_CHANNELS, Denoiser
from condiff.errors import CondiffError, RecipeError
from condiff.model import IMAGE_CHANNELS, build_scheduler, build_unet, widen_unet_input
from condiff.model_folder import load_unet, saved_conditions, saved_denoiser
from condiff.training.trainer import Trainer, TrainResult

SHIPPED_PREFIX = "shipped:"  # model.init_from: shipped:unconditional names a model that ships with condiff


def resolve_init_from(init_from: str | None) -> str | None:
    """`model.init_from` as a folder or Hub id: `shipped:NAME` is the shipped model of task NAME."""
    if not init_from or not init_from.startswith(SHIPPED_PREFIX):
        return init_from
    from condiff.tasks import TASKS

    name = init_from[len(SHIPPED_PREFIX):]
    if name not in TASKS:
        raise RecipeError(f"model.init_from {init_from}: no shipped model {name!r}; shipped models are "
                          + ", ".join(f"{SHIPPED_PREFIX}{task}" for task in TASKS))
    return TASKS[name].resolve_model(None)


def build_denoiser(recipe: Recipe, conditions, palette) -> Denoiser:
    """What the recipe's UNet reads and outputs (condiff.denoiser): its conditions' channels and the settings of
    the recipe's model section that the Denoiser records, with the data's palette (`palette`, a FoundPalette
    or None) and its colours' shares; a palette head without a palette is a one-line error."""
    from condiff.palette import palette_config

    colors = palette.colors if palette is not None else None
    if recipe.model.palette_head and colors is None:
        note = palette.note if palette is not None else "no palette was found"
        raise RecipeError(f"model.palette_head: true needs a palette of the data, and there is none ({note}); "
                          "set data.palette: auto (or kmeans) or model.palette_head: false")
    luma_channel = None
    if recipe.model.diffuse == "chroma":
        luma_channel = conditions.luma_channel
        if luma_channel is None:
            raise RecipeError("model.diffuse: chroma needs a condition that gives each output's luma (grayscale); "
                              f"this recipe's conditions are {', '.join(conditions.names) or 'none'}: add one "
                              "or set model.diffuse: rgb")
    return Denoiser.from_settings({**vars(recipe.model), "condition_channels": conditions.widths,
                                   "luma_channel": luma_channel,
                                   **palette_config(colors, palette.frequencies if colors is not None else None)})


def _initial_unet(recipe: Recipe, conditions, denoiser: Denoiser):
    """A fresh UNet shaped for the `denoiser`, or a pretrained one (widened with zero weights for new
    condition channels and for self-conditioning), whose outputs must already be the denoiser's."""
    init_from = resolve_init_from(recipe.model.init_from)
    if init_from and not recipe.model.init_required and not Path(init_from).expanduser().exists():
        print(f"condiff: {init_from} does not exist (model.init_required: false); training from scratch")
        init_from = None
    if not init_from:
        return build_unet(recipe.model, recipe.data.resolution, in_channels=denoiser.in_channels,
                          out_channels=denoiser.out_channels)
    unet = load_unet(init_from)
    if unet.config.out_channels != denoiser.out_channels:
        wanted = (f"a palette head needs {denoiser.out_channels}, one per colour of this data's palette"
                  if denoiser.head is not None else
                  f"model.diffuse: {recipe.model.diffuse} needs {denoiser.out_channels}; set it as that model has it"
                  if unet.config.out_channels in (CHROMA_CHANNELS, IMAGE_CHANNELS) else
                  "set model.palette_head: true (it keeps that model's palette), or start from another model")
        raise CondiffError(f"model.init_from {init_from}: its UNet outputs {unet.config.out_channels} channels; "
                           f"{wanted}")
    self_condition = recipe.model.self_condition
    have, wanted = unet.config.in_channels, denoiser.in_channels
    started = saved_denoiser(init_from)
    if started is not None and started.config.self_condition:  # its last channels are its own estimate
        if self_condition and have == wanted:
            return unet
        raise CondiffError(f"model.init_from {init_from} is self-conditioned; set model.self_condition: true "
                           "and keep the conditions it was trained with")
    if have == wanted and not self_condition:
        return unet
    # New channels start at zero weight after the old ones: new conditions, then self-conditioning's. An
    # unconditional UNet takes only what is diffused (a chroma model is never one: its luma is a condition).
    without_estimate = denoiser.image_channels + conditions.channels
    if have == denoiser.image_channels or (have <= without_estimate and _channels_extend(init_from, conditions)):
        return widen_unet_input(unet, wanted - have)
    raise CondiffError(f"model.init_from {init_from}: its UNet takes {have} input channels, but the image and "
                       f"conditions need {wanted}; start from an unconditional model, one trained with the "
                       "same conditions, or one whose conditions this recipe's begin with")


def _channels_extend(init_from: str, conditions) -> bool:
    """Whether the recipe's condition channels begin with those of the model in `init_from`, so that new
    channels can be added after them: the same conditions in the same order, then new ones, the last of
    the old ones perhaps with more channels (a setting that adds one, such as sketch `fill`)."""
    old = saved_conditions(init_from)
    if old is None or old.names != conditions.names[: len(old.names)]:
        return False
    counts = conditions.widths[: len(old.names)]
    return counts[:-1] == old.widths[:-1] and counts[-1] >= old.widths[-1]


class Parts(NamedTuple):
    """What a recipe trains: its data, UNet, noise schedule, conditions, and the UNet's Denoiser."""

    dataset: Any
    unet: Any
    scheduler: Any
    conditions: Any
    denoiser: Denoiser


def build_parts(recipe: Recipe, dataset=None, palette=None) -> Parts:
    """The parts of a recipe; a palette head's outputs follow the data's palette. `dataset` and `palette`
    (`data_palette`'s) are built and found here unless given."""
    from condiff.data.sources import build_dataset

    conditions = ConditionStack(conditions=[spec.to_dict() for spec in recipe.conditions])
    set_seed(recipe.train.seed)  # the UNet's initial weights come from the global RNG
    dataset = dataset if dataset is not None else build_dataset(recipe.data)
    if palette is None:
        with torch.random.fork_rng(devices=[]):  # the same initial weights whether or not the data is read
            palette = data_palette(recipe, dataset)
    denoiser = build_denoiser(recipe, conditions, palette)
    check_warm_start(recipe, denoiser)
    unet = _initial_unet(recipe, conditions, denoiser)
    return Parts(dataset, unet, build_scheduler(recipe.scheduler), conditions, denoiser)


def started_denoiser(recipe: Recipe) -> Denoiser | None:
    """The Denoiser of the palette-head model a palette-head recipe starts from (model.init_from), or None: a
    warm start goes on with that model's palette (its outputs are those colours, in that order), and the
    recipe must match how its head reads them (`check_warm_start`)."""
    if not recipe.model.palette_head or not recipe.model.init_from:
        return None
    started = saved_denoiser(resolve_init_from(recipe.model.init_from))
    return started if started is not None and started.head is not None else None


def check_warm_start(recipe: Recipe, denoiser: Denoiser) -> None:
    """A one-line error when a palette-head recipe starts from a head trained with another pixel likelihood:
    its UNet learnt the rest of the odds beside that likelihood, so adding it where the model did not (or not
    adding it) counts each pixel's evidence twice (or not at all)."""
    started = started_denoiser(recipe)
    if started is None:
        return
    # The fade means nothing without the likelihood: only a head with it must match the other's fade.
    keys = ("pixel_likelihood", "pixel_likelihood_until") if started.config.pixel_likelihood else ("pixel_likelihood",)
    for key, _, have in denoiser.differences(started, keys):
        wanted = getattr(recipe.model, key)
        shown = json.dumps  # as YAML writes them: true, false, null, 100
        raise RecipeError(f"model.{key}: {shown(wanted)}, but model.init_from {recipe.model.init_from}'s palette "
                          f"head was trained with {shown(have)}; set model.{key}: {shown(have)} to go on from it")


def data_palette(recipe: Recipe, dataset):
    """The palette of the first images of the data, as data.palette and data.palette_size ask; a palette head
    warm-started from another keeps that one's palette (`started_denoiser`)."""
    from condiff.palette import SAMPLE_IMAGES, FoundPalette, find_palette, from_hex

    items = (dataset[i] for i in range(min(len(dataset), SAMPLE_IMAGES))) if hasattr(dataset, "__len__") \
        else islice(iter(dataset), SAMPLE_IMAGES)
    images = (item["image"] for item in items)  # read only as far as they are used
    started = started_denoiser(recipe)
    if started is not None:
        colors, frequencies = started.config.palette, started.config.palette_frequencies
        check_palette_fits(recipe, np.stack(list(islice(images, 256))), from_hex(colors))
        return FoundPalette(from_hex(colors), f"palette: the {len(colors)} colours of {recipe.model.init_from}'s "
                            "palette head (model.init_from)", None if frequencies is None else np.asarray(frequencies))
    return find_palette(images, recipe.data.palette, recipe.data.palette_size)


PALETTE_FIT = 0.9  # the share of the data's pixels a warm-started palette head must be able to paint


def check_palette_fits(recipe: Recipe, images, colors) -> None:
    """A one-line error when the data's colours (`images`, the first of the data) are mostly not in the palette
    of the palette head a recipe starts from: that head can paint only those colours (a Nouns head on emoji
    paints Nouns colours)."""
    from condiff.palette import on_palette_share

    share = on_palette_share(images, colors)
    if share < PALETTE_FIT:
        raise RecipeError(
            f"model.init_from {recipe.model.init_from}: its palette head paints only its {len(colors)} colours, "
            f"and {share:.0%} of the pixels of {recipe.data.source!r} are among them (at least "
            f"{PALETTE_FIT:.0%} needed); train a head of this data's own colours from scratch (model.init_from: "
            "null), or without a palette head (model.palette_head: false, from an unconditional model without one)")


def train_recipe(recipe: Recipe, overwrite: bool = False, device: str | None = None) -> TrainResult:
    from condiff.data.sources import build_dataset

    dataset = build_dataset(recipe.data)
    palette = data_palette(recipe, dataset)  # found once: said and saved by the trainer, and a head's outputs
    parts = build_parts(recipe, dataset, palette)
    return Trainer(recipe, parts.unet, parts.scheduler, parts.dataset, conditions=parts.conditions,
                   denoiser=parts.denoiser, palette=palette, overwrite=overwrite, device=device).train()
