"""Recipes: typed, validated training configuration.

A recipe is a YAML file with the sections `data`, `model`, `scheduler` and `train`, and an optional
list of `conditions`. It lists only what differs from the defaults, which live here and nowhere else
(an encoder's defaults live in its class). `--set section.key=value` overrides are applied on top.
Unknown keys, wrong types and bad values raise `RecipeError` naming the file and the key (with a
"did you mean" where a key is misspelt).

This module must stay cheap to import: no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condiff.errors import CondiffError, RecipeError, first_line
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, SAMPLERS

if TYPE_CHECKING:
    from condiff.conditions.base import ConditionEncoder

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "linear", "cosine")
BAD_IMAGE_POLICIES = ("skip", "fail")


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
    num_workers: int = 0  # workers only add start-up time: benchmarks/bench_nouns_render.py (docs/benchmarks.md)


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
    mixed_precision: str = "no"
    ema: bool = True
    ema_decay: float = 0.999
    ema_warmup: bool = True  # ramp the decay up early so EMA weights are usable after few steps
    seed: int = 0
    log_every: int = 10
    sample_every: int = 1000  # 0 = never; the final model is always sampled
    sample_num: int = 16
    sample_sampler: str = DEFAULT_SAMPLER  # a fast sampler for previews during training
    sample_steps: int = DEFAULT_SAMPLER_STEPS
    checkpoint_every: int = 500  # 0 = only at the end
    keep_checkpoints: int = 3
    resume: str | None = None  # "latest" or a checkpoint folder
    tensorboard: bool = True


@dataclass
class ConditionSpec:
    """One condition encoder, written flat in a recipe: {name: sketch, dropout: 0.1, <encoder settings>}."""

    FLAT_KEYS: typing.ClassVar[tuple[str, ...]] = ("name", "dropout")  # written beside the settings

    name: str  # a registered encoder (`condiff conditions list`)
    dropout: float = 0.0  # probability that a training sample gets no condition (for guidance)
    settings: dict[str, Any] = field(default_factory=dict)  # the encoder's arguments; omitted ones keep its defaults

    @classmethod
    def from_dict(cls, values: Any, where: str) -> ConditionSpec:
        """A spec from its flat form; a malformed one is a RecipeError starting with `where`."""
        if not isinstance(values, dict) or not isinstance(values.get("name"), str):
            raise RecipeError(f"{where} must be a mapping with a name, e.g. {{name: sketch, dropout: 0.1}}")
        settings = dict(values)
        name, dropout = settings.pop("name"), settings.pop("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise RecipeError(f"{where}.dropout = {dropout!r} must be a number in [0, 1)")
        return cls(name, float(dropout), settings)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dropout": self.dropout, **self.settings}

    def build_encoder(self, where: str) -> ConditionEncoder:
        """The encoder this spec describes. Its name (against the registry), settings (against the
        encoder's arguments) and values (the encoder's own checks) are checked here, and only here: each
        mistake is a RecipeError starting with `where`."""
        import inspect

        from condiff.conditions.registry import get_condition

        try:
            cls = get_condition(self.name)
        except CondiffError as err:
            raise RecipeError(f"{where}: {err}") from None
        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        for key in self.settings:
            if key not in known:
                hint = _did_you_mean(str(key), known) if known else " (it has no settings)"
                raise RecipeError(f"{where}: unknown setting {str(key)!r} for condition {self.name!r}{hint}")
        try:
            return cls(**_typed_settings(cls, self.settings, where))
        except (TypeError, ValueError) as err:
            raise RecipeError(f"{where}: bad value for condition {self.name!r}: {first_line(err)}") from None


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


# --- value checks beyond the type ---------------------------------------------------------------

_CHOICES: dict[str, tuple[str, ...]] = {
    "data.resize": RESIZE_FILTERS,
    "data.bad_images": BAD_IMAGE_POLICIES,
    "scheduler.beta_schedule": BETA_SCHEDULES,
    "scheduler.prediction_type": PREDICTION_TYPES,
    "train.lr_schedule": LR_SCHEDULES,
    "train.mixed_precision": MIXED_PRECISION,
    "train.sample_sampler": SAMPLERS,
}
_POSITIVE = {
    "data.size", "data.resolution", "model.layers_per_block", "model.attention_head_dim",
    "model.norm_num_groups", "scheduler.num_train_timesteps", "train.max_steps", "train.batch_size",
    "train.grad_accum", "train.lr", "train.log_every", "train.sample_num", "train.sample_steps",
    "train.keep_checkpoints", "train.min_snr_gamma", "train.max_bad_updates", "train.max_minutes",
}
_NON_NEGATIVE = {
    "data.num_workers", "train.warmup_steps", "train.weight_decay", "train.max_grad_norm",
    "train.sample_every", "train.checkpoint_every", "model.dropout", "scheduler.beta_start",
}
# Sizes far beyond anything that fits in memory are mistakes, not recipes.
_UPPER_BOUNDS = {"data.resolution": 1024, "train.batch_size": 65_536, "scheduler.num_train_timesteps": 100_000,
                 "model.layers_per_block": 16, "train.grad_accum": 4096}
MAX_CHANNELS = 4096  # per UNet level; wider is a typo, not a model that fits in memory


def _validate_conditions(conditions: Any, origin: str) -> list[ConditionSpec]:
    if not isinstance(conditions, list):
        raise RecipeError(f"{origin}: conditions must be a list, e.g. [{{name: grayscale, dropout: 0.1}}]")
    specs = [ConditionSpec.from_dict(values, f"{origin}: conditions[{i}]") for i, values in enumerate(conditions)]
    for i, spec in enumerate(specs):
        spec.build_encoder(f"{origin}: conditions[{i}]")  # imports the encoders, only for recipes that have some
    return specs


def _validate_values(recipe: Recipe, origin: str) -> None:
    flat = flatten(recipe.to_dict())
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise RecipeError(f"{origin}: {key} = {flat[key]!r} is not one of {', '.join(choices)}")
    for key in _POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise RecipeError(f"{origin}: {key} = {flat[key]!r} must be greater than 0")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise RecipeError(f"{origin}: {key} = {flat[key]!r} must not be negative")
    for key, bound in _UPPER_BOUNDS.items():
        if flat[key] > bound:
            raise RecipeError(f"{origin}: {key} = {flat[key]!r} is too large (at most {bound})")
    if not 0.0 <= flat["train.ema_decay"] < 1.0:
        raise RecipeError(f"{origin}: train.ema_decay = {flat['train.ema_decay']!r} must be in [0, 1)")
    if not 0 < flat["scheduler.beta_start"] < flat["scheduler.beta_end"] < 1:
        raise RecipeError(f"{origin}: scheduler.beta_start and beta_end need 0 < beta_start < beta_end < 1")
    if len(recipe.data.background) != 3 or not all(0 <= c <= 255 for c in recipe.data.background):
        raise RecipeError(f"{origin}: data.background must be three numbers 0..255, e.g. [255, 255, 255]")
    model = recipe.model
    if not model.channels:
        raise RecipeError(f"{origin}: model.channels needs at least one level, e.g. [64, 128, 128]")
    if len(model.attention) != len(model.channels):
        raise RecipeError(
            f"{origin}: model.attention has {len(model.attention)} entries but model.channels has "
            f"{len(model.channels)}; give one true/false per level"
        )
    if len(model.channels) > 8:
        raise RecipeError(f"{origin}: model.channels has {len(model.channels)} levels; at most 8")
    for width in model.channels:
        if width > MAX_CHANNELS:
            raise RecipeError(f"{origin}: model.channels entry {width} is too large (at most {MAX_CHANNELS})")
        if width <= 0 or width % model.norm_num_groups:
            raise RecipeError(
                f"{origin}: model.channels entry {width} must be a positive multiple of "
                f"model.norm_num_groups ({model.norm_num_groups})"
            )
    levels = len(model.channels) - 1
    if recipe.data.resolution % (2**levels):
        raise RecipeError(
            f"{origin}: data.resolution {recipe.data.resolution} must be divisible by {2**levels} "
            f"for a model with {levels + 1} levels"
        )
    # At the bottom of the UNet, GroupNorm normalises groups of (channels / groups) x side x side values;
    # a group of one value always becomes 0, and torch refuses it outright for a batch of one.
    side = recipe.data.resolution // 2**levels
    narrowest = min(model.channels[-2:])
    if narrowest // model.norm_num_groups * side * side < 2:
        raise RecipeError(
            f"{origin}: data.resolution {recipe.data.resolution} with {levels + 1} levels leaves a {side}x{side} "
            f"feature map where GroupNorm groups of model.channels {narrowest} / model.norm_num_groups "
            f"{model.norm_num_groups} hold a single value; use fewer levels, a larger data.resolution or "
            "fewer model.norm_num_groups"
        )


# --- typed merge of plain dicts into the dataclasses -------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats. Raise on mismatch."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except RecipeError:
                pass
    elif origin is list:
        if isinstance(value, list | tuple):
            (item_type,) = typing.get_args(tp)
            return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise RecipeError(f"{where} = {value!r} must be a finite number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise RecipeError(f"{where} = {value!r} has the wrong type: expected {_type_name(tp)}")


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
            raise RecipeError(f"{origin}: unknown key {f'{name}.{key}'!r}{_did_you_mean(str(key), known)}")
        setattr(section, key, _coerce(value, hints[key], f"{origin}: {name}.{key}"))


def recipe_from_dict(values: dict[str, Any], origin: str = "recipe") -> Recipe:
    """Build a validated Recipe from a plain dict (as read from YAML)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{origin}: a recipe must be a mapping with sections data/model/scheduler/train")
    recipe = Recipe()
    sections = [f.name for f in dataclasses.fields(recipe)]
    for name, section_values in values.items():
        if name not in sections:
            raise RecipeError(f"{origin}: unknown section {str(name)!r}{_did_you_mean(str(name), sections)}")
        if name == "conditions":
            recipe.conditions = _validate_conditions(section_values or [], origin)
            continue
        _merge_section(getattr(recipe, name), section_values or {}, name, origin)
    _validate_values(recipe, origin)
    return recipe


# --- files and overrides ------------------------------------------------------------------------


def _parse_scalar(text: str) -> Any:
    """Interpret a --set value the way YAML would (numbers, true/false, null, lists)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a recipe dict (validation happens afterwards)."""
    for item in overrides:
        path, sep, text = item.partition("=")
        parts = path.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. --set train.lr=2e-4")
        section, key = parts
        current = values.setdefault(section, {})
        if not isinstance(current, dict):
            raise RecipeError(f"--set {item!r}: section '{section}' is not a mapping")
        current[key] = _parse_scalar(text)
    return values


def read_recipe_dict(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: recipe file not found; pass a YAML file such as recipes/quickstart.yaml")
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder; pass a recipe YAML file such as recipes/quickstart.yaml")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: not valid YAML ({first_line(err)}); fix the syntax and try again") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping with sections data/model/scheduler/train")
    return values


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file (None = all defaults) and apply --set overrides."""
    values = read_recipe_dict(path) if path is not None else {}
    origin = str(path) if path is not None else "defaults"
    if overrides:
        values = apply_overrides(values, overrides)
        origin += " (with --set overrides)"
    return recipe_from_dict(values, origin)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the fully resolved recipe (every key, defaults included) as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
