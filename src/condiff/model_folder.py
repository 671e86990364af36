"""Model folders: what kind a folder holds, loading it as a pipeline, and writing one.

A model folder is diffusers' own pipeline format (`model_index.json`, `unet/`, `scheduler/`, `denoiser/`,
and for a conditional model `conditions/`); `save_model` writes one and `load_pipeline` reads either kind.

A local folder is checked before diffusers builds anything from it: its configs are read here first
(regular files of a config's size holding JSON objects); every key that sizes an allocation or chooses
a code path is checked against the tables below (`INDEX_RULES`, `SCHEDULER_RULES`, `UNET_RULES`, bounded
by the `MAX_*` sizes); the UNet is built on the meta device (no memory) and its shapes and types are compared
with those in its weights file's header; once loaded, every weight must be finite. A hostile or damaged folder
is one `CondiffError` naming the folder, the file and what to do; nothing is allocated for it before its
configs and headers pass, and nothing is written.
Local weights are read from safetensors only; a pickled weights file is refused without being unpickled.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import DDPMScheduler
from diffusers.utils import logging as diffusers_logging
from safetensors import SafetensorError, safe_open

from condiff.conditions.registry import list_conditions
from condiff.conditions.stack import ConditionStack
from condiff.config import BETA_SCHEDULES, MAX_LEVELS, PREDICTION_TYPES, RANGES
from condiff.denoiser import CHROMA_CHANNELS, MAX_CONDITIONS, MAX_TIMESTEPS, Denoiser
from condiff.denoiser import RULES as DENOISER_RULES
from condiff.errors import CondiffError, StorageError, first_line, is_write_failure, shown, write_failure_reason
from condiff.images import write_bytes_atomic
from condiff.palette import MAX_PALETTE
from condiff.rules import Rule, first_problem, list_of, number, one_of, optional, whole
from condiff.sampling import SAMPLERS, make_sampler

if TYPE_CHECKING:  # imported where used: UNet2DModel and the pipelines load most of diffusers (about a second)
    from diffusers import UNet2DModel

    from condiff.pipeline import ConditionalDDPMPipeline

CONDITIONAL, UNCONDITIONAL = "conditional", "unconditional"
WEIGHTS = "diffusion_pytorch_model.safetensors"
FIX = "copy the model folder again, or train it again (condiff train)"
# The weight types a UNet may hold: the shipped models are float16, training writes float32.
FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")
# What diffusers raises for a folder it cannot load (safetensors' error is not an OSError).
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError)
PLUGIN_FIX = "install the condition plugin this model was trained with (condiff conditions list shows those installed)"

# --- what a folder may hold ---------------------------------------------------------------------

# The bounds of everything that sizes an allocation (or the time to build a model) when a folder loads.
MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; anything larger (or /dev/zero) is not one
# The model's own sizes are bounded as recipes bound them (config.RANGES), so a folder loads exactly when
# a recipe could have trained it: 1e9 timesteps would be 5 GB of betas, a million layers never finish.
MAX_SIDE = int(RANGES["data.resolution"].high)  # sampled images are side x side
MAX_WIDTH = int(RANGES["model.channels"].high)  # channels of a UNet level
MAX_LAYERS = int(RANGES["model.layers_per_block"].high)

# The blocks UNet2DModel's forward can run: cross-attention blocks need text, encoder blocks no time.
DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")  # condiff's samplers
PIPELINES = {"DDPMPipeline": UNCONDITIONAL, "DDIMPipeline": UNCONDITIONAL, "ConditionalDDPMPipeline": CONDITIONAL}

# A conditional folder's model_index.json: diffusers imports every module and class it names.
INDEX_RULES: dict[str, Rule] = {
    "unet": one_of(["diffusers", "UNet2DModel"]),
    "scheduler": one_of(*(["diffusers", name] for name in SCHEDULERS)),
    "conditions": one_of(["condiff.conditions.stack", "ConditionStack"], ["condiff", "ConditionStack"]),
    "denoiser": one_of(["condiff.denoiser", "Denoiser"], ["condiff", "Denoiser"]),  # what the UNet's output means
    "sampler": one_of(*SAMPLERS),  # how a call without num_inference_steps samples
    "sampler_steps": whole(1, MAX_TIMESTEPS),  # ... in this many steps (at most the timesteps: checked below)
}
# An unconditional folder's model_index.json (a diffusers DDPMPipeline, which ignores the denoiser).
UNCONDITIONAL_RULES: dict[str, Rule] = {"denoiser": INDEX_RULES["denoiser"]}
# scheduler_config.json; a key it leaves out takes DDPMScheduler's default, checked too.
SCHEDULER_RULES: dict[str, Rule] = {
    "num_train_timesteps": whole(1, MAX_TIMESTEPS),  # the length of every schedule tensor
    "beta_schedule": one_of(*BETA_SCHEDULES),  # the schedules that DDPM, DDIM and DPM-Solver++ all implement
    "beta_start": number(0, 0.999),  # a beta of 1 makes alpha_bar 0: images of NaN
    "beta_end": number(0, 0.999),
    "trained_betas": optional(list_of(number(0, 0.999), MAX_TIMESTEPS)),  # one per timestep (checked below)
    "prediction_type": one_of(*PREDICTION_TYPES),  # what the UNet predicts: chooses every sampler's update
    # Learned variances ("learned", "learned_range") need 6 UNet outputs.
    "variance_type": one_of(None, "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"),
    "timestep_spacing": one_of("linspace", "leading", "trailing"),  # read only once sampling starts
    "steps_offset": whole(0, 1),  # diffusers writes 0 or 1; more pushes timesteps past the schedule
    "solver_order": whole(1, 3),  # DPM-Solver++ keeps this many outputs; diffusers implements orders 1 to 3
}
# unet/config.json; a key it leaves out takes UNet2DModel's default, checked too. Keys not listed fail
# while the UNet is built on the meta device, and every size must match the weights file.
UNET_RULES: dict[str, Rule] = {
    "sample_size": whole(1, MAX_SIDE),  # the side of every sampled image (condiff samples squares)
    "in_channels": whole(CHROMA_CHANNELS, MAX_WIDTH),  # the denoiser's layout (matched below)
    # RGB images or their chroma (no learned variances); a palette head has one per colour (matched below)
    "out_channels": whole(CHROMA_CHANNELS, MAX_PALETTE),
    "block_out_channels": list_of(whole(1, MAX_WIDTH), MAX_LEVELS),  # one width per level
    "down_block_types": list_of(one_of(*DOWN_BLOCKS), MAX_LEVELS),  # one per level (matched below)
    "up_block_types": list_of(one_of(*UP_BLOCKS), MAX_LEVELS),
    "layers_per_block": whole(1, MAX_LAYERS),
    "norm_num_groups": whole(1, MAX_WIDTH),  # must divide every width (checked below)
    "attn_norm_num_groups": optional(whole(1, MAX_WIDTH)),  # likewise
    "attention_head_dim": optional(whole(1, MAX_WIDTH)),  # at most a width with attention (checked below)
    "time_embedding_dim": optional(whole(1, 4 * MAX_WIDTH)),  # diffusers' default: 4 x the first width
    "num_train_timesteps": optional(whole(1, MAX_TIMESTEPS)),  # rows of a "learned" time embedding
    "class_embed_type": one_of(None),  # condiff samples without class labels
    "num_class_embeds": one_of(None),
    "upsample_type": one_of("conv", "resnet"),  # others build, then break the skip connections
    "downsample_padding": one_of(0, 1),  # likewise: other paddings change the feature sizes
}


def model_kind(folder: str | Path) -> str:
    """'conditional' or 'unconditional', from a model folder's model_index.json (checked)."""
    return _kind(_read_index(Path(folder).expanduser()))


def saved_conditions(folder: str | Path) -> ConditionStack | None:
    """The condition stack a local conditional model folder was trained with; None for any other source
    (an unconditional folder, a Hub id)."""
    path = Path(folder).expanduser()
    if not (path / "model_index.json").is_file() or model_kind(path) != CONDITIONAL:
        return None
    return _condition_stack(path)


def saved_denoiser(folder: str | Path | None) -> Denoiser | None:
    """What the UNet of a local model folder outputs and reads (its Denoiser); None for any other source
    (a Hub id, a bare UNet folder, no folder)."""
    path = Path(folder).expanduser() if folder else None
    if path is None or not (path / "model_index.json").is_file():
        return None
    return _conditions_and_denoiser(path, _read_index(path))[1]


# --- loading ------------------------------------------------------------------------------------


def load_pipeline(source: str | Path) -> ConditionalDDPMPipeline:
    """Any local model folder as a `ConditionalDDPMPipeline` in float32 (safetensors only); an
    unconditional folder (a diffusers `DDPMPipeline` or a bare UNet) gets an empty condition stack. A folder
    saved before the denoiser component had its settings in model_index.json; they are read from there."""
    from condiff.pipeline import ConditionalDDPMPipeline

    path = _local_folder(source)
    index = _read_index(path)
    subfolder = _unet_subfolder(path)
    conditional = _kind(index) == CONDITIONAL
    _refuse_pickled_weights(path if conditional else path / (subfolder or ""))
    scheduler = _load_local_scheduler(path)  # before the UNet: its checks need the timesteps
    timesteps = scheduler.config.num_train_timesteps
    conditions, denoiser = _conditions_and_denoiser(path, index)
    if not conditional:
        unet = _load_local_unet(path, timesteps=timesteps, denoiser=denoiser)
        return ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=conditions, denoiser=denoiser)
    steps = index.get("sampler_steps")
    if isinstance(steps, int) and steps > timesteps:
        raise _damaged(path, path / "model_index.json", f"sampler_steps = {steps} is more than the schedule's "
                       f"{timesteps} timesteps")
    stored_in = _check_unet(path, path / "unet", denoiser, timesteps)
    _weight_files(path, path / "conditions")
    try:
        with quiet_diffusers():  # the conditions and the denoiser are built already (checked)
            pipeline = ConditionalDDPMPipeline.from_pretrained(path, use_safetensors=True, conditions=conditions,
                                                               denoiser=denoiser)
    except CondiffError as err:
        raise CondiffError(f"{path}: {err}") from None
    except LOAD_ERRORS as err:
        raise CondiffError(f"{path}: could not load the model ({first_line(err)}); {FIX}") from None
    _check_loaded(path, pipeline.unet, stored_in)
    return as_float32(pipeline)


def load_unet(source: str) -> UNet2DModel:
    """Load a UNet from a local pipeline/UNet folder or a Hub id (pipeline repos keep it in `unet/`)."""
    from diffusers import UNet2DModel

    if os.path.lexists(Path(source).expanduser()):
        return _load_local_unet(_local_folder(source))
    errors = []
    for subfolder in ("unet", None):  # Hub: a pipeline repo, then a bare UNet repo
        try:
            return UNet2DModel.from_pretrained(source, subfolder=subfolder)
        except Exception as err:  # huggingface_hub raises many types: offline, not found, gated
            errors.append(first_line(err))
    raise CondiffError(f"{source}: no such local folder, and loading it from the Hub failed ({errors[0]}); "
                       "check the path, or the id and your internet connection")


def load_scheduler(source: str) -> DDPMScheduler:
    if os.path.lexists(Path(source).expanduser()):
        return _load_local_scheduler(_local_folder(source))
    try:  # not a local folder: diffusers looks it up on the Hub
        return DDPMScheduler.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise CondiffError(f"{source}: could not read the scheduler config ({first_line(err)})") from None


def _conditions_and_denoiser(path: Path, index: dict) -> tuple[ConditionStack, Denoiser]:
    """The folder's conditions (none for an unconditional folder) and its Denoiser, checked: its `denoiser/`
    component, or in a folder saved before there was one, the settings its model_index.json holds (none: a
    plain UNet)."""
    conditions = _condition_stack(path) if _kind(index) == CONDITIONAL else ConditionStack()
    widths = conditions.widths
    file = path / "denoiser" / "config.json" if "denoiser" in index else path / "model_index.json"
    settings = _read_config(path, file) if "denoiser" in index else {**index, "condition_channels": widths}
    try:
        denoiser = Denoiser.from_settings(settings)
    except CondiffError as err:
        raise _damaged(path, file, str(err)) from None
    if list(denoiser.config.condition_channels) != widths:
        raise _damaged(path, file, f"condition_channels = {list(denoiser.config.condition_channels)}, but the "
                       f"conditions have {widths}")
    return conditions, denoiser


def _load_local_unet(path: Path, timesteps: int | None = None, denoiser: Denoiser | None = None):
    """A local UNet, checked first; its widths are matched with the `denoiser`'s and its time embedding
    with the `timesteps` when known."""
    from diffusers import UNet2DModel

    subfolder = _unet_subfolder(path)
    component = path / subfolder if subfolder else path
    _refuse_pickled_weights(component)
    stored_in = _check_unet(path, component, denoiser, timesteps)
    try:
        with quiet_diffusers():
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder, use_safetensors=True)
    except LOAD_ERRORS as err:
        raise CondiffError(f"{path}: could not load the UNet ({first_line(err)}); {FIX}") from None
    _check_loaded(path, unet, stored_in)
    return as_float32(unet)


def _load_local_scheduler(path: Path) -> DDPMScheduler:
    folder = path / "scheduler" if (path / "scheduler").is_dir() else path
    file = folder / "scheduler_config.json"
    _check_scheduler_config(path, file)
    try:
        with quiet_diffusers():
            scheduler = DDPMScheduler.from_pretrained(file.parent)
    except (OSError, ValueError) as err:
        raise CondiffError(f"{path}: could not read the scheduler config ({first_line(err)}); {FIX}") from None
    _try_samplers(path, file, scheduler)
    return scheduler


def _refuse_pickled_weights(folder: Path) -> None:
    has_safetensors = any(folder.rglob("*.safetensors"))
    pickled = [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    if pickled and not has_safetensors:
        raise CondiffError(
            f"{folder}: weights are only in a pickle-based file ({pickled[0].name}); condiff loads "
            "safetensors only. Convert it with diffusers' save_pretrained(safe_serialization=True)"
        )


def _unet_subfolder(path: Path) -> str | None:
    """A pipeline folder keeps the UNet in `unet/`; a bare UNet folder has config.json at its root."""
    if os.path.lexists(path / "unet" / "config.json"):
        return "unet"
    if os.path.lexists(path / "config.json"):
        return None
    raise CondiffError(
        f"{path}: not a model folder (no unet/config.json or config.json); "
        "pass a folder written by `condiff train` or a diffusers pipeline/UNet folder"
    )


# --- checking a folder before diffusers reads it ------------------------------------------------


def _local_folder(source: str | Path) -> Path:
    path = Path(source).expanduser()
    try:
        if stat.S_ISDIR(path.stat().st_mode):
            return path
        what = "a model must be a folder (diffusers format), not a file"
    except FileNotFoundError:
        what = "no such model folder"
    except OSError as err:  # a symlink loop, a folder we may not enter
        what = f"cannot open the model folder ({err.strerror or first_line(err)})"
    raise CondiffError(f"{source}: {what}; train one (condiff train recipes/quickstart.yaml) or pass --model")


def _damaged(folder: Path, file: Path, problem: str, fix: str = FIX) -> CondiffError:
    """The one-line error for a folder that cannot be loaded: the folder, the file, what, what to do."""
    with contextlib.suppress(ValueError):
        file = file.relative_to(folder)
    return CondiffError(f"{folder}: {file}: {problem}; {fix}")


def _read_config(folder: Path, file: Path) -> dict[str, Any]:
    """A config file's JSON object; it is read only if it is a regular file of a config's size."""
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _damaged(folder, file, "not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise _damaged(folder, file, f"{info.st_size} bytes, too large for a config (at most {MAX_CONFIG_BYTES})")
        values = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _damaged(folder, file, "missing") from None
    except OSError as err:  # a symlink loop, no permission
        raise _damaged(folder, file, f"unreadable ({err.strerror or first_line(err)})") from None
    except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, nested too deep
        raise _damaged(folder, file, f"not valid JSON ({first_line(err)})") from None
    if not isinstance(values, dict):
        raise _damaged(folder, file, f"holds a JSON {type(values).__name__}, not an object {{...}}")
    return values


def _check_rules(folder: Path, file: Path, values: dict[str, Any], rules: dict[str, Rule]) -> None:
    problem = first_problem(values, rules)
    if problem:
        raise _damaged(folder, file, problem)


def _defaults(cls: type) -> dict[str, Any]:
    """A diffusers class's constructor defaults: what it takes for a key a config leaves out."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _kind(index: dict[str, Any]) -> str:
    return PIPELINES.get(index.get("_class_name"), UNCONDITIONAL)


def _read_index(folder: Path) -> dict[str, Any]:
    """model_index.json, checked: a pipeline class condiff loads and, for a conditional folder, only the
    parts condiff writes. A folder without one (a bare UNet) gives {}."""
    file = folder / "model_index.json"
    if not os.path.lexists(file):
        return {}
    index = _read_config(folder, file)
    name = index.get("_class_name")
    if not isinstance(name, str) or name not in PIPELINES:
        raise _damaged(folder, file, f"_class_name = {shown(name)} is not a pipeline condiff loads "
                       f"({', '.join(PIPELINES)})")
    if PIPELINES[name] == CONDITIONAL:
        missing = [key for key in ("unet", "scheduler", "conditions") if key not in index]
        if missing:
            raise _damaged(folder, file, f"names no {missing[0]}")
        _check_rules(folder, file, index, INDEX_RULES)
    else:
        _check_rules(folder, file, index, UNCONDITIONAL_RULES)
    return index


def _check_scheduler_config(folder: Path, file: Path) -> None:
    config = {**_defaults(DDPMScheduler), **_read_config(folder, file)}
    _check_rules(folder, file, config, SCHEDULER_RULES)
    betas, timesteps = config["trained_betas"], config["num_train_timesteps"]
    if betas is not None and len(betas) != timesteps:
        raise _damaged(folder, file, f"trained_betas has {len(betas)} entries but num_train_timesteps is "
                       f"{timesteps}; give one beta per timestep")


def _try_samplers(folder: Path, file: Path, scheduler) -> None:
    """Every sampler the commands offer is made from the schedule now, not halfway through a command."""
    for kind in SAMPLERS:
        try:
            with quiet_diffusers():
                make_sampler(scheduler, kind).set_timesteps(1)
        except Exception as err:  # any failure here is the config's; diffusers raises many types
            raise _damaged(folder, file, f"the {kind} sampler cannot use this schedule ({first_line(err)})") from None


def _condition_stack(folder: Path) -> ConditionStack:
    """The conditions a conditional folder names, built (they are small) to count their channels."""
    file = folder / "conditions" / "config.json"
    specs = _read_config(folder, file).get("conditions")
    if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_CONDITIONS or not all(
            isinstance(spec, dict) for spec in specs):
        raise _damaged(folder, file, f"conditions = {shown(specs)} must be a list of 1 to {MAX_CONDITIONS} "
                       'entries like {"name": "grayscale", "dropout": 0.1}')
    try:
        return ConditionStack(conditions=specs)
    except CondiffError as err:
        names = {spec.get("name") for spec in specs if isinstance(spec.get("name"), str)}
        fix = FIX if names <= set(list_conditions()) else PLUGIN_FIX
        raise _damaged(folder, file, str(err), fix) from None


def _check_unet(folder: Path, component: Path, denoiser: Denoiser | None,
                timesteps: int | None) -> dict[str, Path]:
    """The UNet's config (every rule, then how its sizes fit together and with the `denoiser`'s layout), then
    its weights file against the model that config describes, built on the meta device; returns the file that
    holds each weight."""
    from diffusers import UNet2DModel

    file = component / "config.json"
    values = _read_config(folder, file)
    config = {**_defaults(UNet2DModel), **values}
    _check_rules(folder, file, config, UNET_RULES)
    problem = (_unet_shape_problem(config) or (denoiser.unet_problem(config) if denoiser is not None else None)
               or _time_embedding_problem(config, timesteps))
    if problem:
        raise _damaged(folder, file, problem)
    return _check_weights(folder, component, _meta_shapes(folder, file, UNet2DModel, values))


def _unet_shape_problem(config: dict[str, Any]) -> str | None:
    """How the levels fit together: what would build and then fail in the first sampling step."""
    widths, downs, ups = config["block_out_channels"], config["down_block_types"], config["up_block_types"]
    if not len(widths) == len(downs) == len(ups):
        return (f"block_out_channels, down_block_types and up_block_types need one entry per level "
                f"(they have {len(widths)}, {len(downs)} and {len(ups)})")
    for key in ("norm_num_groups", "attn_norm_num_groups"):
        if config[key] and any(width % config[key] for width in widths):
            return f"{key} = {config[key]} must divide every block_out_channels entry {list(widths)}"
    levels_with_kinds = [*zip(widths, downs, strict=True), *zip(reversed(widths), ups, strict=True)]
    attention = [width for width, kind in levels_with_kinds if "Attn" in kind]
    if config["mid_block_type"] is not None and config["add_attention"]:
        attention.append(widths[-1])
    head = config["attention_head_dim"]
    if head and attention and head > min(attention):
        return f"attention_head_dim = {head} is wider than {min(attention)} channels, a level with attention"
    levels, side = len(widths) - 1, config["sample_size"]
    if side % 2**levels:
        return f"sample_size = {side} must be divisible by {2**levels} for a UNet of {levels + 1} levels"
    # GroupNorm groups of a single value at the bottom normalise to 0 (and fail for a batch of one).
    bottom = side // 2**levels
    if min(widths[-2:]) // config["norm_num_groups"] * bottom * bottom < 2:
        return f"sample_size = {side} leaves a {bottom}x{bottom} bottom level too small for GroupNorm"
    return None


def _time_embedding_problem(config: dict[str, Any], timesteps: int | None) -> str | None:
    rows = config["num_train_timesteps"]
    if config["time_embedding_type"] == "learned" and (rows is None or (timesteps or 0) > rows):
        return f"a learned time embedding needs num_train_timesteps of at least the schedule's ({timesteps})"
    return None


def _meta_shapes(folder: Path, file: Path, cls: type, values: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of the model a config describes, built on the meta device (no memory)."""
    try:
        with torch.device("meta"), quiet_diffusers():
            model = cls.from_config(values)
    except Exception as err:  # any failure to build it is the config's; diffusers raises many types
        raise _damaged(folder, file, f"diffusers cannot build this model ({first_line(err)})") from None
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _weight_files(folder: Path, component: Path) -> list[Path]:
    """A component's safetensors file, or the shards its index names; each must be a regular file."""
    index = component / f"{WEIGHTS}.index.json"
    files = [component / WEIGHTS]
    if not os.path.lexists(files[0]) and os.path.lexists(index):  # diffusers' sharded weights
        shards = _read_config(folder, index).get("weight_map")
        names = sorted({str(name) for name in shards.values()}) if isinstance(shards, dict) else []
        if not names or any(Path(name).name != name for name in names):
            raise _damaged(folder, index, "weight_map must name shard files beside it")
        files = [component / name for name in names]
    for file in files:
        try:
            regular = stat.S_ISREG(file.stat().st_mode)
        except FileNotFoundError:
            raise _damaged(folder, file, "missing: the folder has no weights") from None
        except OSError as err:
            raise _damaged(folder, file, f"could not load the weights ({err.strerror or first_line(err)})") from None
        if not regular:
            raise _damaged(folder, file, "could not load the weights: not a regular file")
    return files


def _check_weights(folder: Path, component: Path, needed: dict[str, tuple[int, ...]]) -> dict[str, Path]:
    """The weights file's header (shapes and types only; no weight is read) against the shapes `needed`;
    returns the file that holds each weight."""
    stored: dict[str, tuple[int, ...]] = {}
    stored_in: dict[str, Path] = {}
    files = _weight_files(folder, component)
    for file in files:
        try:
            with safe_open(file, framework="pt") as weights:
                for name in weights.keys():
                    header = weights.get_slice(name)
                    # diffusers would cast integers to floats: int8 weights of |w| < 1 all become 0.
                    kind = _type_name(header.get_dtype())
                    if kind not in FLOAT_TYPES:
                        raise _damaged(folder, file, f"could not load the UNet: {name} holds {kind} values, not "
                                       f"floating-point weights ({', '.join(FLOAT_TYPES)})")
                    stored[name], stored_in[name] = tuple(header.get_shape()), file
        except (SafetensorError, OSError, ValueError) as err:
            raise _damaged(folder, file, f"could not load the UNet: unreadable weights ({first_line(err)})") from None
    for name in sorted(needed.keys() & stored.keys()):
        if needed[name] != stored[name]:
            raise _damaged(folder, files[0], f"could not load the UNet: {name} has shape {list(stored[name])} "
                           f"but config.json needs {list(needed[name])}")
    have, need = (sum(math.prod(shape) for shape in shapes.values()) for shapes in (stored, needed))
    if have < need:
        raise _damaged(folder, files[0], f"could not load the UNet: it holds {have} weights but config.json "
                       f"describes {need}; the weights are missing or belong to another model")
    return stored_in


def _type_name(code: str) -> str:
    """A safetensors type code as torch names the type: I8 -> int8, BF16 -> bfloat16, F8_E4M3 -> float8_e4m3."""
    kinds = {"BF": "bfloat", "F": "float", "I": "int", "U": "uint"}
    match = re.fullmatch(r"(BF|F|I|U)(\d+)(.*)", code)
    return kinds[match[1]] + match[2] + match[3].lower() if match else code.lower()


def _check_loaded(folder: Path, model, stored_in: dict[str, Path]) -> None:
    """Every weight loaded and finite (`stored_in`: the file that holds each). diffusers leaves a weight the
    file lacks on the meta device, to fail at the first step; one NaN or Inf makes every image black."""
    weights = model.state_dict()
    missing = [name for name, tensor in weights.items() if tensor.is_meta]
    if missing:
        raise CondiffError(f"{folder}: could not load the UNet: the weights file has no {missing[0]}; {FIX}")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            what = "NaN" if bool(tensor.isnan().any()) else "infinite values"
            file = stored_in.get(name) or min(stored_in.values())  # a name diffusers renamed: its first file
            raise _damaged(folder, file, f"could not load the UNet: {name} holds {what}; the weights are damaged")


@contextlib.contextmanager
def quiet_diffusers():
    """No progress bars or notices from diffusers while loading: an error after them must stay one line."""
    level, bars = diffusers_logging.get_verbosity(), diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        if bars:
            diffusers_logging.enable_progress_bar()


def as_float32(model):
    """Shipped weights are fp16 to stay small; compute in float32 (fp16 is slow or missing on CPUs).
    diffusers warns on any `.to(dtype)` of a model; these models have no modules that must stay fp32."""
    with quiet_diffusers():
        return model.to(torch.float32)


# --- saving -------------------------------------------------------------------------------------


def save_model(folder: str | Path, unet: UNet2DModel, scheduler: DDPMScheduler, conditions=None,
               denoiser: Denoiser | None = None) -> None:
    """Write a pipeline folder (safetensors weights): a plain diffusers `DDPMPipeline` for an
    unconditional model, a `ConditionalDDPMPipeline` when the model has condition channels; either with
    the `denoiser` component (condiff.denoiser: its layout, prediction and palette; a plain one if None).
    diffusers' own DDPMPipeline loads an unconditional folder and ignores the denoiser, which is right for a
    plain UNet; a self-conditioned or palette-head UNet needs condiff's pipeline to sample.

    The pipeline is written whole into `folder/.partial-model` first and only then moved into place
    (`model_index.json` last), so a failed write (full disk, read-only folder) leaves an earlier model
    in `folder` untouched; it raises a one-line CondiffError naming the folder.
    """
    conditional = conditions is not None and conditions.channels
    if denoiser is None:
        denoiser = Denoiser(condition_channels=conditions.widths if conditional else [])
    if conditional:
        from condiff.pipeline import ConditionalDDPMPipeline

        pipeline = ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=conditions, denoiser=denoiser)
    else:
        from diffusers import DDPMPipeline

        pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
        # DDPMPipeline saves only the components of its signature: the denoiser is written beside them.
        pipeline.register_to_config(denoiser=[type(denoiser).__module__, type(denoiser).__name__])
    folder = Path(folder)
    partial = folder / ".partial-model"
    try:
        shutil.rmtree(partial, ignore_errors=True)  # debris of an earlier crash
        folder.mkdir(parents=True, exist_ok=True)
        pipeline.save_pretrained(partial, safe_serialization=True)
        if not conditional:
            denoiser.save_pretrained(partial / "denoiser", safe_serialization=True)
        for entry in sorted(partial.iterdir(), key=lambda p: p.name == "model_index.json"):
            target = folder / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        partial.rmdir()
    except Exception as err:
        if not is_write_failure(err):
            raise
        shutil.rmtree(partial, ignore_errors=True)
        reason = write_failure_reason(err)
        raise StorageError(f"could not write the model to {folder} ({reason}); free disk space or choose a "
                           "writable folder", reason) from None


def upgrade_folder(folder: str | Path) -> bool:
    """Rewrite a model folder saved before the denoiser component so that its settings live in `denoiser/`
    (what diffusers' own `from_pretrained` loads); its weights are not touched and it samples as before.
    False when the folder has a denoiser already. The component is written first and model_index.json is
    replaced last, atomically, so a failure leaves the folder as it was (readable either way)."""
    path = _local_folder(folder)
    index = _read_index(path)
    if not index:
        raise CondiffError(f"{folder}: not a pipeline folder (no model_index.json); nothing to upgrade")
    if "denoiser" in index:
        return False
    denoiser = _conditions_and_denoiser(path, index)[1]
    partial = path / ".partial-denoiser"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        denoiser.save_pretrained(partial, safe_serialization=True)
        shutil.rmtree(path / "denoiser", ignore_errors=True)
        os.replace(partial, path / "denoiser")
        upgraded = {key: value for key, value in index.items() if key not in DENOISER_RULES}
        upgraded["denoiser"] = [type(denoiser).__module__, type(denoiser).__name__]
        text = json.dumps(upgraded, indent=2, sort_keys=True) + "\n"
        write_bytes_atomic(path / "model_index.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise CondiffError(f"could not upgrade {folder} ({err.strerror or first_line(err)}); it is unchanged "
                           "(choose a writable folder)") from None
    return True
