"""Recipes: typed, validated training configuration.

A recipe is a YAML file with the sections `data`, `model`, `scheduler` and `train`, and an optional
list of `conditions`. It lists only what differs from the defaults, which live here and nowhere else
(an encoder's defaults live in its class). `--set section.key=value` overrides are applied on top.
Unknown keys, wrong types and bad values raise `RecipeError` naming the file and the key (with a
"did you mean" where a key is misspelt). Every number has a range (`RANGES`), checked before anything is
built or written.

A recipe's conditions are checked here for their form (a name, a dropout, settings of plain values); their
names and settings are checked against the encoders by the `check_condition` that the caller hands
`load_recipe` (`condiff.conditions.build_encoder`): the encoders sit above this module, which imports none.

This module must stay cheap to import: no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condiff.errors import RecipeError, cut, first_line, shown

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
# The samplers condiff.sampling.make_sampler makes (train.sample_sampler, --scheduler, a saved folder's sampler):
# dpm = DPM-Solver++ on "trailing" timesteps; dpm-logsnr = DPM-Solver++ with steps uniform in log-SNR.
SAMPLERS = ("ddpm", "ddim", "dpm", "dpm-logsnr")
# The default sampler and steps were chosen by benchmarks/bench_sampling.py (docs/benchmarks.md, "Samplers").
DEFAULT_SAMPLER = "dpm"
DEFAULT_SAMPLER_STEPS = 20
# The number types the UNet may sample in (--precision); bfloat16's speed, and its samples that are not
# bit-identical to float32's: docs/benchmarks.md, "Sampling throughput".
PRECISIONS = ("float32", "bfloat16")
DEFAULT_PRECISION = "float32"


def sampler_step_limit(kind: str, timesteps: int) -> int:
    """The most steps sampler `kind` takes on a schedule of `timesteps`: diffusers' DPM-Solver++ fails
    (IndexError) when asked for every training timestep."""
    return timesteps - kind.startswith("dpm")


# --- sections -----------------------------------------------------------------------------------


@dataclass
class DataConfig:
    # "nouns" (built in), a Hub dataset id (m1guelpf/nouns), an image folder,
    # a `save_to_disk` folder or a .parquet file.
    source: str = "nouns"
    # nouns: how many distinct Nouns (null = an endless stream); other sources: keep the first N (null = all).
    size: int | None = 50_000
    seed: int = 0  # which Nouns are drawn; independent of the training seed
    resolution: int = 32
    image_column: str = "image"
    split: str = "train"
    resize: str = "nearest"  # pixel art stays crisp; use bicubic for photographs
    center_crop: bool = True
    random_flip: bool = True
    background: list[int] = field(default_factory=lambda: [255, 255, 255])  # RGBA is composited on it
    bad_images: str = "fail"  # in an image folder: "skip" (and count) or "fail" on an unreadable file
    # Image sources: every Nth image (in file-name order) is left out of training and kept for the condition-use
    # gap (condiff.training.condition_use); 0 = none. Nouns are held out by drawing them with another seed.
    held_out_every: int = 0
    num_workers: int = 0  # workers only add start-up time: benchmarks/bench_nouns_render.py (docs/benchmarks.md)
    # The colours the model is saved with (condiff.palette): "auto" = the data's exact colours when a
    # sample has at most palette_size of them, "kmeans" = else palette_size k-means colours, "off" = none.
    palette: str = "auto"
    palette_size: int = 256


@dataclass
class ModelConfig:
    # A pretrained DDPM pipeline or UNet folder, or a Hub id (anton-l/ddpm-butterflies-128).
    # When set, the shape keys below are ignored and the pretrained UNet is used.
    init_from: str | None = None
    # false: a missing local init_from folder means "train from scratch" (e.g. warm start when it exists)
    init_required: bool = True
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # one entry per resolution level
    attention: list[bool] = field(default_factory=lambda: [False, False, True])  # self-attention per level
    layers_per_block: int = 1  # step time against 2: benchmarks/bench_defaults_sweep.py (docs/benchmarks.md)
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    dropout: float = 0.0
    # Self-conditioning (Chen et al. 2022, "Analog Bits", arxiv 2208.04202): the UNet also sees its own
    # previous estimate of the clean image, as 3 more input channels after the conditions'.
    self_condition: bool = False
    # A palette head (condiff.palette_head): the UNet outputs one logit per colour of the data's palette
    # (data.palette must find one); train.palette_ce_weight adds a cross-entropy term to its loss.
    palette_head: bool = False
    # With a palette head: add each noisy pixel's own log-likelihood under each colour to the logits
    # (condiff.palette_head), at full weight at t = 0 and fading linearly to none at pixel_likelihood_until
    # (null = full weight at every timestep). The fade by 100 of 1000 beat the full weight by about 40 FD at
    # the same share on the palette (benchmarks/results/NOTES.md). A warm start from a head must match both.
    pixel_likelihood: bool = True
    pixel_likelihood_until: int | None = 100
    # What is diffused: rgb, the whole image; chroma, only its chroma (BT.601 Cb, Cr), with each output's luma
    # taken exactly from a condition that fixes it (grayscale): colorize's lightness is right on any data.
    diffuse: str = "rgb"


@dataclass
class SchedulerConfig:
    beta_schedule: str = "squaredcos_cap_v2"  # improved DDPM, arxiv 2102.09672
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001  # linear / scaled_linear only
    beta_end: float = 0.02
    # v-prediction (Salimans & Ho 2022, arxiv 2202.00512), kept by benchmarks/bench_defaults_sweep.py.
    prediction_type: str = "v_prediction"


@dataclass
class TrainConfig:
    output_dir: str = "outputs/run"
    max_steps: int = 10_000
    batch_size: int = 32  # chosen by benchmarks/bench_defaults_sweep.py (docs/benchmarks.md)
    grad_accum: int = 1
    lr: float = 2e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_bad_updates: int = 10  # NaN/Inf losses or gradients skipped in a row before training stops
    # Stop after this many minutes of training (resumed time included) even before max_steps; the LR
    # schedule still spans max_steps. A checkpoint and the model are written as at the end.
    max_minutes: float | None = None
    # Min-SNR loss weighting (arxiv 2303.09556), chosen by benchmarks/bench_defaults_sweep.py; None turns it off.
    min_snr_gamma: float | None = 5.0
    # Which timesteps training draws: uniform, or cubic, more of them at high noise where only the condition
    # can say what the image will be (T2I-Adapter, arxiv 2302.08453).
    timestep_sampling: str = "uniform"
    # A condition-consistency loss (ControlNet++, arxiv 2404.07987) on the predicted clean image, for
    # conditions that offer one (sketch, grayscale): its weight (0 = off) and the lowest-noise share of
    # the timesteps where it applies.
    consistency_weight: float = 0.0
    consistency_timesteps: float = 0.2
    # With model.palette_head: the weight of the cross-entropy of its colour odds beside the squared error,
    # at each timestep min(SNR, min_snr_gamma) / min_snr_gamma of it (condiff.training.loss).
    palette_ce_weight: float = 1.0
    mixed_precision: str = "no"
    # torch.compile the UNet's training step (inductor; a C++ compiler on the CPU): off by default, as its
    # speed-up (with bf16: docs/benchmarks.md) comes after a cold compile of one to two minutes.
    compile: bool = False
    ema: bool = True
    ema_decay: float = 0.999
    ema_warmup: bool = True  # ramp the decay up early so EMA weights are usable after few steps
    seed: int = 0
    log_every: int = 10
    sample_every: int = 1000  # 0 = never; the final model is always sampled
    sample_num: int = 16
    sample_sampler: str = DEFAULT_SAMPLER  # a fast sampler for previews during training
    sample_steps: int = DEFAULT_SAMPLER_STEPS
    # `condiff train` ends with `condiff eval` of the final model on up to this many images it never trained on
    # (data.held_out_every's for an image source, held-out Nouns for nouns), as the commands run it and with
    # every sampling-time step off: eval.json and the model card's "Evaluation". 0 = none.
    eval_images: int = 0
    checkpoint_every: int = 500  # 0 = only at the end
    keep_checkpoints: int = 3
    resume: str | None = None  # "latest" or a checkpoint folder
    tensorboard: bool = True


@dataclass
class ConditionSpec:
    """One condition encoder, written flat in a recipe: {name: sketch, dropout: 0.1, <encoder settings>}."""

    FLAT_KEYS: typing.ClassVar[tuple[str, ...]] = ("name", "dropout", "package")  # written beside the settings

    name: str  # a registered encoder (`condiff conditions list`)
    dropout: float = 0.0  # probability that a training sample gets no condition (for guidance)
    settings: dict[str, Any] = field(default_factory=dict)  # the encoder's arguments; omitted ones keep its defaults
    package: str | None = None  # the distribution that provides the encoder, recorded in saved models

    @classmethod
    def from_dict(cls, values: Any, where: str) -> ConditionSpec:
        """A spec from its flat form; a malformed one is a RecipeError starting with `where`."""
        if not isinstance(values, dict) or not isinstance(values.get("name"), str):
            raise RecipeError(f"{where} must be a mapping with a name, e.g. {{name: sketch, dropout: 0.1}}")
        settings = dict(values)
        name, dropout = settings.pop("name"), settings.pop("dropout", 0.0)
        package = settings.pop("package", None)
        number = isinstance(dropout, int | float) and not isinstance(dropout, bool)
        if not number or dropout not in RANGES["conditions.dropout"]:
            raise RecipeError(f"{where}.dropout = {shown(dropout)} must be a number in [0, 1)")
        if package is not None and not isinstance(package, str):
            raise RecipeError(f"{where}.package = {shown(package)} must be a package name")
        return cls(name, float(dropout), settings, package)

    def to_dict(self) -> dict[str, Any]:
        package = {"package": self.package} if self.package else {}
        return {"name": self.name, "dropout": self.dropout, **package, **self.settings}

    def checked_settings(self, encoder: type, where: str) -> dict[str, Any]:
        """The settings for the encoder class `encoder` (this spec's, looked up by name): each one of its
        arguments, typed as its annotations say where they are plain, every number finite and within 64
        bits. Each mistake is a RecipeError starting with `where`; the encoder's own checks come after."""
        known = [p for p in inspect.signature(encoder.__init__).parameters if p != "self"]
        for key in self.settings:
            if key not in known:
                hint = _did_you_mean(_key_text(key), known) if known else " (it has no settings)"
                raise RecipeError(f"{where}: unknown setting {shown(key)} for condition {shown(self.name)}{hint}")
        settings = _typed_settings(encoder, self.settings, where)
        for key, value in settings.items():  # their ranges are the encoder's own checks
            for path, number in _numbers(value, f"{where}.{key}"):
                if isinstance(number, float) and not math.isfinite(number):
                    raise RecipeError(f"{path} = {shown(number)} must be a finite number")
                if isinstance(number, int) and not -(2**63) <= number < 2**63:
                    raise RecipeError(f"{path} = {shown(number)} is too large (torch takes 64-bit integers)")
        return settings


# A recipe's check of one condition against its encoder: (spec, "file: conditions[i]") -> anything; it
# raises a RecipeError starting with the second argument (condiff.conditions.build_encoder).
ConditionCheck = Callable[[ConditionSpec, str], object]


def _numbers(value: Any, where: str, depth: int = 0, budget: list[int] | None = None):
    """(where, number) for every int or float in a setting, through lists and mappings. A setting nested
    deeper than 8 levels or holding more than 10000 values is refused, not walked."""
    budget = [10_000] if budget is None else budget
    budget[0] -= 1
    if depth > 8 or budget[0] < 0:
        raise RecipeError(f"{where} is nested too deeply or holds too many values for a setting")
    if isinstance(value, int | float) and not isinstance(value, bool):
        yield where, value
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]", depth + 1, budget)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{_key_text(key)}", depth + 1, budget)


def _typed_settings(cls: type, settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings checked against the encoder's annotations where they are plain (int, float, str, bool,
    optional or list of these), so a wrong type is named like any other recipe key."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a plugin's annotations need not resolve here; its own checks still apply
        hints = {}

    def plain(tp: Any) -> bool:
        return tp in (int, float, str, bool, type(None)) or (
            typing.get_origin(tp) in (typing.Union, types.UnionType, list) and all(map(plain, typing.get_args(tp))))

    return {key: _coerce(value, hints[key], f"{where}.{key}") if plain(hints.get(key)) else value
            for key, value in settings.items()}


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    conditions: list[ConditionSpec] = field(default_factory=list)  # in the order of their channels

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as written to recipe.yaml and compared on resume; conditions in their flat form."""
        return {**dataclasses.asdict(self), "conditions": [spec.to_dict() for spec in self.conditions]}


def flatten(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """{"train.lr": 2e-4, ..., "conditions": [...]}: one entry per key, for checks and comparisons.

    Conditions are given their dropout, which recipes saved before it was always written may omit."""
    flat: dict[str, Any] = {}
    for section, values in recipe_dict.items():
        if isinstance(values, dict):
            flat.update({f"{section}.{key}": value for key, value in values.items()})
        elif section == "conditions":
            flat[section] = [{"dropout": 0.0, **spec} for spec in values]
        else:
            flat[section] = values
    return flat


def inert_keys(flat: dict[str, Any]) -> set[str]:
    """The keys of a flattened recipe whose value trains nothing in it: the pixel likelihood without a palette
    head, its fade without the likelihood. Checks and resume comparisons pass them over."""
    inert = set()
    if not flat.get("model.palette_head"):
        inert.add("model.pixel_likelihood")
    if not (flat.get("model.palette_head") and flat.get("model.pixel_likelihood")):
        inert.add("model.pixel_likelihood_until")
    return inert


# --- ranges: where every number of a recipe may lie --------------------------------------------


@dataclass(frozen=True)
class Range:
    """low..high; an open end is left out. `why` says where a limit comes from when it is not obvious."""

    low: float
    high: float
    why: str = ""
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:  # NaN is in no range
        above = value > self.low if self.low_open else value >= self.low
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:  # "from 0 to 1 (why)"
        low, high = (str(n) if isinstance(n, int) else f"{n:g}" for n in (self.low, self.high))
        if not self.low_open and not self.high_open:
            text = f"from {low} to {high}"
        else:
            text = (f"{'greater than' if self.low_open else 'at least'} {low} and "
                    f"{'below' if self.high_open else 'at most'} {high}")
        return f"{text} ({self.why})" if self.why else text


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit (accelerate's set_seed seeds numpy too); also every --seed
MANY = 10**9  # steps and intervals: more is a typo (and LR schedules multiply them)
_SEED = Range(0, SEED_MAX, "numpy takes 32-bit seeds")
_BETA = Range(0, 1, "torch's AdamW needs 0 <= beta < 1", high_open=True)

MAX_LEVELS = 8  # UNet levels (model.channels entries); more is a typo, not a model

# Every numeric recipe key (list keys: each entry), checked before anything is built or written. Limits
# beyond what fits in memory or what torch accepts turn a traceback (or an exhausted machine) into a
# one-line error. tests/test_input_bounds.py checks that no numeric key is missing.
RANGES: dict[str, Range] = {
    "data.size": Range(1, 10_000_000, "each epoch shuffles a permutation of every index; null streams Nouns"),
    "data.seed": _SEED,
    "data.resolution": Range(1, 1024, "larger images do not fit in memory"),
    "data.palette_size": Range(2, 4096, "the most colours a saved palette holds"),
    "data.background": Range(0, 255, "8-bit RGB"),
    "data.num_workers": Range(0, 256, "each worker is a process"),
    "data.held_out_every": Range(0, 10_000_000, "0 = none; 1 would hold out every image"),
    "model.channels": Range(1, 4096, "per level; wider does not fit in memory"),
    "model.layers_per_block": Range(1, 16),
    "model.attention_head_dim": Range(1, 4096, "and at most the narrowest level with attention"),
    "model.norm_num_groups": Range(1, 4096, "it must divide every model.channels entry"),
    "model.dropout": Range(0, 1, "a probability; 1 would drop every activation", high_open=True),
    "model.pixel_likelihood_until": Range(1, 100_000, "a timestep; null = every timestep"),
    "scheduler.num_train_timesteps": Range(1, 100_000),
    "scheduler.beta_start": Range(0, 1, "and below beta_end", low_open=True, high_open=True),
    "scheduler.beta_end": Range(0, 1, low_open=True, high_open=True),
    "train.max_steps": Range(1, MANY),
    "train.batch_size": Range(1, 65_536),
    "train.grad_accum": Range(1, 4096),
    "train.lr": Range(0, 1, "AdamW moves each weight by about lr per step; beyond 1 it diverges at once",
                      low_open=True),
    "train.warmup_steps": Range(0, MANY),
    "train.adam_beta1": _BETA,
    "train.adam_beta2": _BETA,
    "train.weight_decay": Range(0, 10, "AdamW shrinks each weight by lr * weight_decay per step"),
    "train.max_grad_norm": Range(0, 1e9, "0 = no clipping"),
    "train.max_bad_updates": Range(1, 1_000_000),
    "train.max_minutes": Range(0, 10**7, "null = no limit", low_open=True),
    "train.min_snr_gamma": Range(0, 1e6, "null = off", low_open=True),
    "train.consistency_weight": Range(0, 1000, "0 = off"),
    "train.consistency_timesteps": Range(0, 1, "a share of the timesteps, the lowest-noise ones", low_open=True),
    "train.palette_ce_weight": Range(0, 1000, "0 = the squared error alone"),
    "train.ema_decay": Range(0, 1, high_open=True),
    "train.seed": _SEED,
    "train.log_every": Range(1, MANY),
    "train.sample_every": Range(0, MANY, "0 = never"),
    "train.sample_num": Range(1, 256, "previews are sampled in one batch"),
    "train.eval_images": Range(0, 10_000, "0 = no evaluation"),
    "train.sample_steps": Range(1, 100_000, "and at most what the sampler takes for scheduler.num_train_timesteps"),
    "train.checkpoint_every": Range(0, MANY, "0 = only at the end"),
    "train.keep_checkpoints": Range(1, 1000),
    "conditions.dropout": Range(0, 1, "a probability; 1 would never show the condition", high_open=True),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "data.resize": RESIZE_FILTERS,
    "data.bad_images": ("skip", "fail"),
    "data.palette": ("auto", "off", "kmeans"),  # condiff.palette.find_palette
    "scheduler.beta_schedule": BETA_SCHEDULES,
    "scheduler.prediction_type": PREDICTION_TYPES,
    "model.diffuse": ("rgb", "chroma"),  # condiff.denoiser
    "train.lr_schedule": ("constant", "linear", "cosine"),
    "train.timestep_sampling": ("uniform", "cubic"),  # condiff.training.loss.draw_timesteps
    "train.mixed_precision": ("no", "fp16", "bf16"),
    "train.sample_sampler": SAMPLERS,
}
# Strings that name something and cannot be empty, with an example of a good value.
_NAMES = {"data.source": "nouns, an image folder, a .parquet file or a Hub id", "data.image_column": "image",
          "data.split": "train", "train.output_dir": "outputs/run"}


# --- keys in messages ---------------------------------------------------------------------------


def _key_text(key: Any) -> str:
    """A key as written in messages: a string without quotes (escaped, cut short), anything else shown."""
    return cut(repr(key[:100])[1:-1], 60) if isinstance(key, str) else shown(key)


# --- value checks beyond the type ---------------------------------------------------------------


def _validate_conditions(conditions: Any, origin: str, check: ConditionCheck | None) -> list[ConditionSpec]:
    if not isinstance(conditions, list):
        raise RecipeError(f"{origin}: conditions must be a list, e.g. [{{name: grayscale, dropout: 0.1}}]")
    specs = [ConditionSpec.from_dict(values, f"{origin}: conditions[{i}]") for i, values in enumerate(conditions)]
    if check is not None:
        for i, spec in enumerate(specs):
            check(spec, f"{origin}: conditions[{i}]")
    return specs


def _check_ranges(flat: dict[str, Any], origin: str) -> None:
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise RecipeError(f"{origin}: {key} = {shown(flat[key])} is not one of {', '.join(choices)}")
    for key, bounds in RANGES.items():
        if key.startswith("conditions."):
            continue
        value = flat[key]
        for name, item in ([(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list)
                           else [(key, value)]):
            if item is not None and item not in bounds:
                raise RecipeError(f"{origin}: {name} = {shown(item)} must be {bounds}")
    for key, example in _NAMES.items():
        if not flat[key].strip():
            raise RecipeError(f"{origin}: {key} is empty; give a name such as {example}")
    for key, value in flat.items():
        if isinstance(value, str) and "\0" in value:
            raise RecipeError(f"{origin}: {key} = {shown(value)} contains a NUL character")


def _check_model(recipe: Recipe, origin: str) -> None:
    model, resolution = recipe.model, recipe.data.resolution
    if not model.channels:
        raise RecipeError(f"{origin}: model.channels needs at least one level, e.g. [64, 128, 128]")
    if len(model.attention) != len(model.channels):
        raise RecipeError(
            f"{origin}: model.attention has {len(model.attention)} entries but model.channels has "
            f"{len(model.channels)}; give one true/false per level"
        )
    if len(model.channels) > MAX_LEVELS:
        raise RecipeError(f"{origin}: model.channels has {len(model.channels)} levels; at most {MAX_LEVELS}")
    for width in model.channels:
        if width % model.norm_num_groups:
            raise RecipeError(
                f"{origin}: model.channels entry {width} must be a multiple of "
                f"model.norm_num_groups ({model.norm_num_groups})"
            )
    # Each attention block has channels // attention_head_dim heads; the middle block always has one.
    narrowest = min([w for w, a in zip(model.channels, model.attention, strict=True) if a] + model.channels[-1:])
    if model.attention_head_dim > narrowest:
        raise RecipeError(
            f"{origin}: model.attention_head_dim {model.attention_head_dim} is wider than model.channels "
            f"{narrowest}, a level with attention (the middle block always has it); use at most {narrowest}"
        )
    levels = len(model.channels) - 1
    if resolution % (2**levels):
        raise RecipeError(
            f"{origin}: data.resolution {resolution} must be divisible by {2**levels} "
            f"for a model with {levels + 1} levels"
        )
    # At the bottom of the UNet, GroupNorm normalises groups of (channels / groups) x side x side values;
    # a group of one value always becomes 0, and torch refuses it outright for a batch of one.
    side = resolution // 2**levels
    bottom = min(model.channels[-2:])
    if bottom // model.norm_num_groups * side * side < 2:
        raise RecipeError(
            f"{origin}: data.resolution {resolution} with {levels + 1} levels leaves a {side}x{side} "
            f"feature map where GroupNorm groups of model.channels {bottom} / model.norm_num_groups "
            f"{model.norm_num_groups} hold a single value; use fewer levels, a larger data.resolution or "
            "fewer model.norm_num_groups"
        )


def _validate_values(recipe: Recipe, origin: str) -> None:
    flat = flatten(recipe.to_dict())
    _check_ranges(flat, origin)
    until, timesteps = flat["model.pixel_likelihood_until"], flat["scheduler.num_train_timesteps"]
    fades = "model.pixel_likelihood_until" not in inert_keys(flat) and until is not None
    if fades and until > timesteps:
        raise RecipeError(f"{origin}: model.pixel_likelihood_until = {until} (100 unless set) is beyond the last "
                          f"timestep; use at most scheduler.num_train_timesteps ({timesteps}), e.g. a tenth of it "
                          "as the default is of 1000, or null for full weight at every timestep")
    if not flat["scheduler.beta_start"] < flat["scheduler.beta_end"]:
        raise RecipeError(f"{origin}: scheduler.beta_start and beta_end need 0 < beta_start < beta_end < 1")
    if len(recipe.data.background) != 3:
        raise RecipeError(f"{origin}: data.background must be three numbers 0..255, e.g. [255, 255, 255]")
    if 0 < flat["train.eval_images"] < 10:
        raise RecipeError(f"{origin}: train.eval_images = {flat['train.eval_images']}: distances need at least 10 "
                          "images; use 0 (no evaluation) or 10 or more, e.g. 300")
    train = recipe.train
    most = sampler_step_limit(train.sample_sampler, timesteps)
    if train.sample_steps > most:
        fix = f"use at most {most}" if most else "choose another train.sample_sampler"
        raise RecipeError(
            f"{origin}: train.sample_steps {train.sample_steps} is more than the {train.sample_sampler} sampler "
            f"takes with scheduler.num_train_timesteps {timesteps}; {fix}"
        )
    _check_model(recipe, origin)


# --- typed merge of plain dicts into the dataclasses -------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


class _WrongType(RecipeError):
    """A value of the wrong type: a union goes on to its next member. Other RecipeErrors are final."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats. Raise on mismatch."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except _WrongType:
                pass
    elif origin is list:
        if isinstance(value, list | tuple):
            (item_type,) = typing.get_args(tp)
            return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    elif tp is float:
        return _coerce_float(value, where)
    elif tp in (bool, int, str, type(None)):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    raise _WrongType(f"{where} = {shown(value)} has the wrong type: expected {_type_name(tp)}")


def _coerce_float(value: Any, where: str) -> float:
    number = value
    if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
        try:
            number = float(value)
        except ValueError:
            pass
    if not isinstance(number, int | float) or isinstance(number, bool):
        raise _WrongType(f"{where} = {shown(value)} has the wrong type: expected a number")
    try:
        number = float(number)
    except OverflowError:  # an integer beyond any float
        raise RecipeError(f"{where} = {shown(value)} is too large") from None
    if not math.isfinite(number):
        raise RecipeError(f"{where} = {shown(value)} must be a finite number")
    return number


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"


def _merge_section(section: Any, values: Any, name: str, origin: str) -> None:
    if not isinstance(values, dict):
        raise RecipeError(f"{origin}: section '{name}' must be a mapping of keys to values")
    hints = typing.get_type_hints(type(section))
    known = [f.name for f in dataclasses.fields(section)]
    for key, value in values.items():
        if key not in hints:
            raise RecipeError(f"{origin}: unknown key '{name}.{_key_text(key)}'{_did_you_mean(_key_text(key), known)}")
        setattr(section, key, _coerce(value, hints[key], f"{origin}: {name}.{key}"))


def recipe_from_dict(values: dict[str, Any], origin: str = "recipe",
                     check_condition: ConditionCheck | None = None) -> Recipe:
    """Build a validated Recipe from a plain dict (as read from YAML). `check_condition` checks each
    condition against its encoder (`condiff.conditions.build_encoder`); without it, only their form is."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{origin}: a recipe must be a mapping with sections data/model/scheduler/train")
    recipe = Recipe()
    sections = [f.name for f in dataclasses.fields(recipe)]
    for name, section_values in values.items():
        if name not in sections:
            text = _key_text(name)
            raise RecipeError(f"{origin}: unknown section '{text}'{_did_you_mean(text, sections)}")
        if name == "conditions":
            recipe.conditions = _validate_conditions([] if section_values is None else section_values, origin,
                                                     check_condition)
            continue
        _merge_section(getattr(recipe, name), {} if section_values is None else section_values, name, origin)
    _validate_values(recipe, origin)
    return recipe


# --- files and overrides ------------------------------------------------------------------------

MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few hundred bytes; a larger file is the wrong file


class _RefusedYAML(Exception):
    """YAML that a recipe may not use (an alias, a duplicate key); the message says what and where."""


@functools.cache
def _recipe_loader() -> type:
    """PyYAML's SafeLoader, refusing anchors and aliases (600 bytes of aliases expand to 10**9 values),
    duplicate keys (YAML would silently keep the last) and integers too long for Python to read."""
    import yaml

    class RecipeLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _RefusedYAML(f"line {event.start_mark.line + 1}: YAML anchors and aliases (&name, *name) "
                                   "are not allowed in recipes; write each value out")
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                    if key in seen:
                        raise _RefusedYAML(f"duplicate key {shown(key)} (lines {seen[key]} and {line}); keep one")
                    seen[key] = line
            return super().construct_mapping(node, deep)

        def construct_long_int(self, node: Any) -> int:
            try:
                return self.construct_yaml_int(node)
            except ValueError:  # beyond sys.get_int_max_str_digits()
                raise _RefusedYAML(f"line {node.start_mark.line + 1}: an integer of {len(node.value)} digits "
                                   "is too long for a recipe") from None

    RecipeLoader.add_constructor("tag:yaml.org,2002:int", RecipeLoader.construct_long_int)
    # YAML 1.2 booleans only: YAML 1.1 also reads yes/no/on/off as booleans, which would turn the
    # documented `train.mixed_precision: no` and `data.palette: off` into False.
    RecipeLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    RecipeLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    return RecipeLoader


def _load_yaml(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_recipe_loader())  # noqa: S506  (a SafeLoader)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a recipe dict (validation happens afterwards). Each value is read
    the way YAML would (numbers, true/false, null, lists); text that YAML cannot read stays text."""
    import yaml

    for item in overrides:
        path, sep, text = item.partition("=")
        parts = path.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise RecipeError(f"--set {shown(item)}: expected section.key=value, e.g. --set train.lr=2e-4")
        section, key = parts
        current = values.setdefault(section, {})
        if not isinstance(current, dict):
            raise RecipeError(f"--set {shown(item)}: section '{_key_text(section)}' is not a mapping")
        try:
            current[key] = _load_yaml(text)
        except _RefusedYAML as err:
            raise RecipeError(f"--set {shown(item)}: {err}") from None
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: a date such as 2024-13-45
            current[key] = text
    return values


def read_recipe_dict(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: recipe file not found; pass a YAML file such as recipes/quickstart.yaml")
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder; pass a recipe YAML file such as recipes/quickstart.yaml")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_RECIPE_BYTES + 1)  # never more: /dev/zero is a file too
    except OSError as err:
        raise RecipeError(f"{path}: cannot be read ({err.strerror or first_line(err)})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: too large for a recipe (over {MAX_RECIPE_BYTES >> 10} KiB); "
                          "pass a recipe YAML file such as recipes/quickstart.yaml")
    try:
        values = _load_yaml(data.decode("utf-8"))
    except _RefusedYAML as err:
        raise RecipeError(f"{path}: {err}") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to be a recipe") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:  # ValueError: a date such as 2024-13-45
        reason = cut(first_line(err), 100)
        raise RecipeError(f"{path}: not valid YAML ({reason}); fix the syntax and try again") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping with sections data/model/scheduler/train")
    return values


def load_recipe(path: str | Path | None, overrides: list[str] | None = None,
                check_condition: ConditionCheck | None = None) -> Recipe:
    """Read a recipe file (None = all defaults) and apply --set overrides; `check_condition` as for
    `recipe_from_dict`."""
    values = read_recipe_dict(path) if path is not None else {}
    origin = str(path) if path is not None else "defaults"
    if overrides:
        values = apply_overrides(values, overrides)
        origin += " (with --set overrides)"
    return recipe_from_dict(values, origin, check_condition)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the fully resolved recipe (every key, defaults included) as YAML, readable as a recipe: a
    value that appears twice is written out twice, never as an alias."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(recipe.to_dict(), Dumper=Dumper, sort_keys=False)
    Path(path).write_text(text, encoding="utf-8")
