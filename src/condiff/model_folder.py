"""Model folders: what kind a folder holds, loading it as a pipeline, and writing one.

A model folder is diffusers' own pipeline format (`model_index.json`, `unet/`, `scheduler/`, and for a
conditional model `conditions/`). An unconditional model is written as a plain `DDPMPipeline`, so
`diffusers.DDPMPipeline.from_pretrained(folder)` loads it; a conditional one as a
`ConditionalDDPMPipeline`. `load_pipeline` reads either kind as a `ConditionalDDPMPipeline` (with no
conditions for an unconditional model), so every command samples through the same pipeline.

A local folder is checked before diffusers builds anything from it: its configs are read here first
(regular files of a config's size holding JSON objects); every key that sizes an allocation or chooses
a code path is checked against the tables below (`INDEX_RULES`, `SCHEDULER_RULES`, `UNET_RULES`, bounded
by the `MAX_*` sizes); the UNet is built on the meta device (no memory) and its shapes are compared with
those in its weights file's header. A hostile or damaged folder is one `CondiffError` naming the folder,
the file and what to do; nothing is allocated for it and nothing is written.
Local weights are read from safetensors only; a pickled weights file is refused without being unpickled.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import reprlib
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condiff.config import BETA_SCHEDULES, MAX_LEVELS, PREDICTION_TYPES, RANGES
from condiff.errors import CondiffError, StorageError, first_line, is_write_failure, write_failure_reason
from condiff.model import IMAGE_CHANNELS, input_channels
from condiff.palette import HEX_COLOR, MAX_PALETTE
from condiff.sampling import SAMPLERS

if TYPE_CHECKING:
    import numpy as np
    from diffusers import DDPMScheduler, UNet2DModel

    from condiff.conditions.stack import ConditionStack
    from condiff.pipeline import ConditionalDDPMPipeline

CONDITIONAL, UNCONDITIONAL = "conditional", "unconditional"
WEIGHTS = "diffusion_pytorch_model.safetensors"
FIX = "copy the model folder again, or train it again (condiff train)"
PLUGIN_FIX = "install the condition plugin this model was trained with (condiff conditions list shows those installed)"

# --- what a folder may hold ---------------------------------------------------------------------

Rule = Callable[[Any], "str | None"]  # a config value -> what is wrong with it, or None


def _is_number(value: Any) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _whole(low: int, high: int) -> Rule:
    """A whole number in [low, high]: not a bool, and not 1e9 (a float in JSON)."""
    return lambda v: None if type(v) is int and low <= v <= high else f"must be a whole number from {low} to {high}"


def _hex_color(value: Any) -> str | None:
    return None if isinstance(value, str) and HEX_COLOR.match(value) else 'must be a colour "#rrggbb" (lower-case hex)'



def _number(low: float, high: float) -> Rule:
    return lambda v: None if _is_number(v) and low <= v <= high else f"must be a number from {low:g} to {high:g}"


def _one_of(*choices: Any) -> Rule:
    text = ", ".join(json.dumps(choice) for choice in choices)
    wanted = f"must be one of {text}" if len(choices) > 1 else f"must be {text}"
    return lambda v: None if any(type(v) is type(c) and v == c for c in choices) else wanted


def _optional(rule: Rule) -> Rule:
    return lambda v: None if v is None else rule(v)


def _list_of(rule: Rule, most: int) -> Rule:
    def check(values: Any) -> str | None:
        if not isinstance(values, list | tuple) or not 1 <= len(values) <= most:
            return f"must be a list of 1 to {most} entries"
        return next((f"(entry {i}) {problem}" for i, v in enumerate(values) if (problem := rule(v))), None)

    return check


# The bounds of everything that sizes an allocation (or the time to build a model) when a folder loads.
MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; anything larger (or /dev/zero) is not one
# The model's own sizes are bounded as recipes bound them (config.RANGES), so a folder loads exactly when
# a recipe could have trained it: 1e9 timesteps would be 5 GB of betas, a million layers never finish.
MAX_TIMESTEPS = int(RANGES["scheduler.num_train_timesteps"].high)
MAX_SIDE = int(RANGES["data.resolution"].high)  # sampled images are side x side
MAX_WIDTH = int(RANGES["model.channels"].high)  # channels of a UNet level
MAX_LAYERS = int(RANGES["model.layers_per_block"].high)
MAX_CONDITIONS = 16  # encoders in a conditional model; each adds input channels (real ones have 1 or 2)

# The blocks UNet2DModel's forward can run: cross-attention blocks need text, encoder blocks no time.
DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")  # condiff's samplers
PIPELINES = {"DDPMPipeline": UNCONDITIONAL, "DDIMPipeline": UNCONDITIONAL, "ConditionalDDPMPipeline": CONDITIONAL}

# A conditional folder's model_index.json: diffusers imports every module and class it names.
INDEX_RULES: dict[str, Rule] = {
    "unet": _one_of(["diffusers", "UNet2DModel"]),
    "scheduler": _one_of(*(["diffusers", name] for name in SCHEDULERS)),
    "conditions": _one_of(["condiff.conditions.stack", "ConditionStack"], ["condiff", "ConditionStack"]),
    "sampler": _one_of(*SAMPLERS),  # how a call without num_inference_steps samples
    "sampler_steps": _whole(1, MAX_TIMESTEPS),  # ... in this many steps (at most the timesteps: checked below)
    "palette": _optional(_list_of(_hex_color, MAX_PALETTE)),  # the data's colours
    "palette_frequencies": _optional(_list_of(_number(0, 1), MAX_PALETTE)),  # ... their shares (matched below)
    "self_condition": _one_of(False, True),  # 3 more UNet input channels (matched below)
    "palette_head": _one_of(False, True),  # one UNet output per palette colour (matched below)
    "pixel_likelihood": _one_of(False, True),  # ... added to each noisy pixel's log-likelihood (condiff.palette_head)
    "pixel_likelihood_until": _optional(_whole(1, MAX_TIMESTEPS)),  # ... fading out by this timestep
}
# Either kind's model_index.json may hold these (diffusers' DDPMPipeline ignores the keys).
SHARED_RULES: dict[str, Rule] = {key: INDEX_RULES[key] for key in ("palette", "palette_frequencies", "self_condition",
                                                                   "palette_head", "pixel_likelihood",
                                                                   "pixel_likelihood_until")}
# scheduler_config.json; a key it leaves out takes DDPMScheduler's default, checked too.
SCHEDULER_RULES: dict[str, Rule] = {
    "num_train_timesteps": _whole(1, MAX_TIMESTEPS),  # the length of every schedule tensor
    "beta_schedule": _one_of(*BETA_SCHEDULES),  # the schedules that DDPM, DDIM and DPM-Solver++ all implement
    "beta_start": _number(0, 0.999),  # a beta of 1 makes alpha_bar 0: images of NaN
    "beta_end": _number(0, 0.999),
    "trained_betas": _optional(_list_of(_number(0, 0.999), MAX_TIMESTEPS)),  # one per timestep (checked below)
    "prediction_type": _one_of(*PREDICTION_TYPES),  # what the UNet predicts: chooses every sampler's update
    # Learned variances ("learned", "learned_range") need 6 UNet outputs.
    "variance_type": _one_of(None, "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"),
    "timestep_spacing": _one_of("linspace", "leading", "trailing"),  # read only once sampling starts
    "steps_offset": _whole(0, 1),  # diffusers writes 0 or 1; more pushes timesteps past the schedule
    "solver_order": _whole(1, 3),  # DPM-Solver++ keeps this many outputs; diffusers implements orders 1 to 3
}
# unet/config.json; a key it leaves out takes UNet2DModel's default, checked too. Keys not listed fail
# while the UNet is built on the meta device, and every size must match the weights file.
UNET_RULES: dict[str, Rule] = {
    "sample_size": _whole(1, MAX_SIDE),  # the side of every sampled image (condiff samples squares)
    "in_channels": _whole(IMAGE_CHANNELS, MAX_WIDTH),  # the image's and the conditions' (matched below)
    # condiff samples RGB images (no learned variances); a palette head has one per colour (matched below)
    "out_channels": _whole(IMAGE_CHANNELS, MAX_PALETTE),
    "block_out_channels": _list_of(_whole(1, MAX_WIDTH), MAX_LEVELS),  # one width per level
    "down_block_types": _list_of(_one_of(*DOWN_BLOCKS), MAX_LEVELS),  # one per level (matched below)
    "up_block_types": _list_of(_one_of(*UP_BLOCKS), MAX_LEVELS),
    "layers_per_block": _whole(1, MAX_LAYERS),
    "norm_num_groups": _whole(1, MAX_WIDTH),  # must divide every width (checked below)
    "attn_norm_num_groups": _optional(_whole(1, MAX_WIDTH)),  # likewise
    "attention_head_dim": _optional(_whole(1, MAX_WIDTH)),  # at most a width with attention (checked below)
    "time_embedding_dim": _optional(_whole(1, 4 * MAX_WIDTH)),  # diffusers' default: 4 x the first width
    "num_train_timesteps": _optional(_whole(1, MAX_TIMESTEPS)),  # rows of a "learned" time embedding
    "class_embed_type": _one_of(None),  # condiff samples without class labels
    "num_class_embeds": _one_of(None),
    "upsample_type": _one_of("conv", "resnet"),  # others build, then break the skip connections
    "downsample_padding": _one_of(0, 1),  # likewise: other paddings change the feature sizes
}


# The UNet outputs of a model without a palette head, and why (a message's words).
IMAGE_OUTPUTS = (IMAGE_CHANNELS, "condiff samples 3-channel images (a palette head also needs palette_head: true "
                                 "in model_index.json)")


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


def saved_self_condition(folder: str | Path) -> bool:
    """Whether a local model folder holds a self-conditioned model (False for any other source)."""
    path = Path(folder).expanduser()
    if not (path / "model_index.json").is_file():
        return False
    return _read_index(path).get("self_condition", False)


def saved_palette_head(folder: str | Path | None) -> dict | None:
    """A local palette-head model's `palette` ("#rrggbb"), `palette_frequencies`, `pixel_likelihood` and
    `pixel_likelihood_until` (condiff.palette_head); None for any other source (no head, a Hub id, no folder)."""
    from condiff.palette_head import saved_head_settings

    path = Path(folder).expanduser() if folder else None
    if path is None or not (path / "model_index.json").is_file():
        return None
    index = _read_index(path)
    if not index.get("palette_head", False) or not index.get("palette"):
        return None
    return {"palette": index["palette"], "palette_frequencies": index.get("palette_frequencies"),
            **saved_head_settings(index)}


# --- loading ------------------------------------------------------------------------------------


def load_pipeline(source: str | Path) -> ConditionalDDPMPipeline:
    """Any local model folder as a `ConditionalDDPMPipeline` in float32 (safetensors only); an
    unconditional folder (a diffusers `DDPMPipeline` or a bare UNet) gets an empty condition stack."""
    from condiff.conditions.stack import ConditionStack
    from condiff.palette_head import saved_head_settings
    from condiff.pipeline import ConditionalDDPMPipeline

    path = _local_folder(source)
    index = _read_index(path)
    subfolder = _unet_subfolder(path)
    _refuse_pickled_weights(path if _kind(index) == CONDITIONAL else path / (subfolder or ""))
    scheduler = _load_local_scheduler(path)  # before the UNet: its checks need the timesteps
    timesteps = scheduler.config.num_train_timesteps
    self_condition = index.get("self_condition", False)
    if _kind(index) == UNCONDITIONAL:
        unet = _load_local_unet(path, condition_channels=0, timesteps=timesteps, self_condition=self_condition,
                                outputs=_outputs(path, index))
        return ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=ConditionStack(),
                                       palette=index.get("palette"),
                                       palette_frequencies=index.get("palette_frequencies"),
                                       self_condition=self_condition, palette_head=index.get("palette_head", False),
                                       **saved_head_settings(index))
    return _load_conditional(path, index, timesteps)


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
    from diffusers import DDPMScheduler

    if os.path.lexists(Path(source).expanduser()):
        return _load_local_scheduler(_local_folder(source))
    try:  # not a local folder: diffusers looks it up on the Hub
        return DDPMScheduler.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise CondiffError(f"{source}: could not read the scheduler config ({first_line(err)})") from None


def _load_conditional(path: Path, index: dict, timesteps: int) -> ConditionalDDPMPipeline:
    from condiff.pipeline import ConditionalDDPMPipeline

    steps = index.get("sampler_steps")
    if isinstance(steps, int) and steps > timesteps:
        raise _damaged(path, path / "model_index.json", f"sampler_steps = {steps} is more than the schedule's "
                       f"{timesteps} timesteps")
    conditions = _condition_stack(path)
    _check_unet(path, path / "unet", conditions.channels, timesteps, index.get("self_condition", False),
                _outputs(path, index))
    _weight_files(path, path / "conditions")
    try:
        with quiet_diffusers():
            pipeline = ConditionalDDPMPipeline.from_pretrained(path, use_safetensors=True)
    except CondiffError as err:
        raise CondiffError(f"{path}: {err}") from None
    except _load_errors() as err:
        raise CondiffError(f"{path}: could not load the model ({first_line(err)}); {FIX}") from None
    _check_loaded(path, pipeline.unet)
    return as_float32(pipeline)


def _outputs(path: Path, index: dict) -> tuple[int, str]:
    """How many outputs the UNet must have by model_index.json, and why: the image's, or one per palette colour."""
    if not index.get("palette_head", False):
        return IMAGE_OUTPUTS
    if not index.get("palette"):
        raise _damaged(path, path / "model_index.json", "palette_head is true but there is no palette")
    return len(index["palette"]), "one per colour of its palette head's palette"


def _load_local_unet(path: Path, condition_channels: int | None = None, timesteps: int | None = None,
                     self_condition: bool = False, outputs: tuple[int, str] | None = None):
    """A local UNet, checked first; `condition_channels` (with `self_condition`'s), `timesteps` and
    `outputs` (`_outputs`) are matched when known."""
    from diffusers import UNet2DModel

    subfolder = _unet_subfolder(path)
    component = path / subfolder if subfolder else path
    _refuse_pickled_weights(component)
    _check_unet(path, component, condition_channels, timesteps, self_condition, outputs)
    try:
        with quiet_diffusers():
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder, use_safetensors=True)
    except _load_errors() as err:
        raise CondiffError(f"{path}: could not load the UNet ({first_line(err)}); {FIX}") from None
    _check_loaded(path, unet)
    return as_float32(unet)


def _load_local_scheduler(path: Path) -> DDPMScheduler:
    from diffusers import DDPMScheduler

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


def _load_errors() -> tuple[type[Exception], ...]:
    """What diffusers raises for a folder it cannot load (safetensors' error is not an OSError)."""
    from safetensors import SafetensorError

    return OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError


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
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        is_folder, what = False, "no such model folder"
    except OSError as err:  # a symlink loop, a folder we may not enter
        is_folder, what = False, f"cannot open the model folder ({err.strerror or first_line(err)})"
    else:
        what = "a model must be a folder (diffusers format), not a file"
    if not is_folder:
        raise CondiffError(f"{source}: {what}; train one (condiff train recipes/quickstart.yaml) or pass --model")
    return path


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


def _shown(value: Any) -> str:
    """A config value in a message, cut short (a list of a million betas is not printed)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = 40
    text = short.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_rules(folder: Path, file: Path, values: dict[str, Any], rules: dict[str, Rule]) -> None:
    for key, rule in rules.items():
        if key in values and (problem := rule(values[key])):
            raise _damaged(folder, file, f"{key} = {_shown(values[key])} {problem}")


def _defaults(cls: type) -> dict[str, Any]:
    """A diffusers class's constructor defaults: what it takes for a key a config leaves out."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _kind(index: dict[str, Any]) -> str:
    return PIPELINES.get(index.get("_class_name"), UNCONDITIONAL) if index else UNCONDITIONAL


def _read_index(folder: Path) -> dict[str, Any]:
    """model_index.json, checked: a pipeline class condiff loads and, for a conditional folder, only the
    parts condiff writes. A folder without one (a bare UNet) gives {}."""
    file = folder / "model_index.json"
    if not os.path.lexists(file):
        return {}
    index = _read_config(folder, file)
    name = index.get("_class_name")
    if not isinstance(name, str) or name not in PIPELINES:
        raise _damaged(folder, file, f"_class_name = {_shown(name)} is not a pipeline condiff loads "
                       f"({', '.join(PIPELINES)})")
    if PIPELINES[name] == CONDITIONAL:
        missing = [key for key in ("unet", "scheduler", "conditions") if key not in index]
        if missing:
            raise _damaged(folder, file, f"names no {missing[0]}")
        _check_rules(folder, file, index, INDEX_RULES)
    else:
        _check_rules(folder, file, index, SHARED_RULES)
    shares, colors = index.get("palette_frequencies"), index.get("palette")
    if shares is not None and (colors is None or len(shares) != len(colors)):
        raise _damaged(folder, file, "palette_frequencies needs one share per palette colour")
    return index


def _check_scheduler_config(folder: Path, file: Path) -> None:
    from diffusers import DDPMScheduler

    config = {**_defaults(DDPMScheduler), **_read_config(folder, file)}
    _check_rules(folder, file, config, SCHEDULER_RULES)
    betas, timesteps = config["trained_betas"], config["num_train_timesteps"]
    if betas is not None and len(betas) != timesteps:
        raise _damaged(folder, file, f"trained_betas has {len(betas)} entries but num_train_timesteps is "
                       f"{timesteps}; give one beta per timestep")


def _try_samplers(folder: Path, file: Path, scheduler) -> None:
    """Every sampler the commands offer is made from the schedule now, not halfway through a command."""
    from condiff.sampling import make_sampler

    for kind in SAMPLERS:
        try:
            with quiet_diffusers():
                make_sampler(scheduler, kind).set_timesteps(1)
        except Exception as err:  # any failure here is the config's; diffusers raises many types
            raise _damaged(folder, file, f"the {kind} sampler cannot use this schedule ({first_line(err)})") from None


def _condition_stack(folder: Path) -> ConditionStack:
    """The conditions a conditional folder names, built (they are small) to count their channels."""
    from condiff.conditions.stack import ConditionStack

    file = folder / "conditions" / "config.json"
    specs = _read_config(folder, file).get("conditions")
    if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_CONDITIONS or not all(
            isinstance(spec, dict) for spec in specs):
        raise _damaged(folder, file, f"conditions = {_shown(specs)} must be a list of 1 to {MAX_CONDITIONS} "
                       'entries like {"name": "grayscale", "dropout": 0.1}')
    try:
        return ConditionStack(conditions=specs)
    except CondiffError as err:
        names = [spec.get("name") for spec in specs if isinstance(spec.get("name"), str)]
        fix = FIX if all(_is_registered(name) for name in names) else PLUGIN_FIX
        raise _damaged(folder, file, str(err), fix) from None


def _is_registered(condition: str) -> bool:
    from condiff.conditions.registry import get_condition

    try:
        get_condition(condition)
    except CondiffError:
        return False
    return True


def _check_unet(folder: Path, component: Path, condition_channels: int | None, timesteps: int | None,
                self_condition: bool = False, outputs: tuple[int, str] | None = IMAGE_OUTPUTS) -> None:
    """The UNet's config (every rule, then how its sizes fit together), then its weights file against
    the model that config describes, built on the meta device."""
    from diffusers import UNet2DModel

    file = component / "config.json"
    values = _read_config(folder, file)
    config = {**_defaults(UNet2DModel), **values}
    _check_rules(folder, file, config, UNET_RULES)
    problem = _unet_shape_problem(config) or _unet_input_problem(config, condition_channels, timesteps, self_condition)
    if not problem and outputs is not None and config["out_channels"] != outputs[0]:
        problem = f"out_channels = {config['out_channels']}, but this model needs {outputs[0]}: {outputs[1]}"
    if problem:
        raise _damaged(folder, file, problem)
    _check_weights(folder, component, _meta_shapes(folder, file, UNet2DModel, values))


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


def _unet_input_problem(config: dict[str, Any], condition_channels: int | None, timesteps: int | None,
                        self_condition: bool = False) -> str | None:
    """The UNet against the rest of the folder: its input channels and its time embedding."""
    wanted = input_channels(condition_channels or 0, self_condition)
    if condition_channels is not None and config["in_channels"] != wanted:
        inputs = ("the image, this model's conditions and its self-conditioning estimate" if self_condition
                  else "the image and this model's conditions")
        return f"in_channels = {config['in_channels']}, but {inputs} have {wanted} channels"
    rows = config["num_train_timesteps"]
    if config["time_embedding_type"] == "learned" and (rows is None or (timesteps or 0) > rows):
        return f"a learned time embedding needs num_train_timesteps of at least the schedule's ({timesteps})"
    return None


def _meta_shapes(folder: Path, file: Path, cls: type, values: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of the model a config describes, built on the meta device (no memory)."""
    import torch

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


def _check_weights(folder: Path, component: Path, needed: dict[str, tuple[int, ...]]) -> None:
    """The weights file's header (shapes only; no weight is read) against the shapes `needed`."""
    from safetensors import SafetensorError, safe_open

    stored: dict[str, tuple[int, ...]] = {}
    files = _weight_files(folder, component)
    for file in files:
        try:
            with safe_open(file, framework="pt") as weights:
                stored.update({name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()})
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


def _check_loaded(folder: Path, model) -> None:
    """diffusers leaves a weight the file lacks on the meta device, to fail at the first step."""
    missing = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if missing:
        raise CondiffError(f"{folder}: could not load the UNet: the weights file has no {missing[0]}; {FIX}")


@contextlib.contextmanager
def quiet_diffusers():
    """No progress bars or notices from diffusers while loading: an error after them must stay one line."""
    from diffusers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def as_float32(model):
    """Shipped weights are fp16 to stay small; compute in float32 (fp16 is slow or missing on CPUs).
    diffusers warns on any `.to(dtype)` of a model; these models have no modules that must stay fp32."""
    import torch

    with quiet_diffusers():
        return model.to(torch.float32)


# --- saving -------------------------------------------------------------------------------------


def save_model(folder: str | Path, unet: UNet2DModel, scheduler: DDPMScheduler, conditions=None,
               palette: np.ndarray | None = None, palette_frequencies: np.ndarray | None = None,
               self_condition: bool = False, palette_head: bool = False, pixel_likelihood: bool = False,
               pixel_likelihood_until: int | None = None) -> None:
    """Write a pipeline folder (safetensors weights): a plain diffusers `DDPMPipeline` for an
    unconditional model, a `ConditionalDDPMPipeline` when the model has condition channels. A palette
    ((P, 3) uint8, condiff.palette) and its colours' shares of the data ((P,)) go into model_index.json
    as `palette` and `palette_frequencies` for either kind, and `self_condition: true` for a self-conditioned
    model (whose UNet diffusers' own DDPMPipeline loads but cannot sample with: it takes condiff's pipeline),
    and `palette_head: true` for a UNet with one output per palette colour (likewise condiff's pipeline only),
    with `pixel_likelihood` and `pixel_likelihood_until` (condiff.palette_head.PaletteHead) recorded beside it.

    The pipeline is written whole into `folder/.partial-model` first and only then moved into place
    (`model_index.json` last), so a failed write (full disk, read-only folder) leaves an earlier model
    in `folder` untouched; it raises a one-line CondiffError naming the folder.
    """
    from condiff.palette import palette_config
    from condiff.palette_head import head_config

    colors = palette_config(palette, palette_frequencies)
    if conditions is None or not conditions.channels:
        from diffusers import DDPMPipeline

        pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
        if palette is not None:
            pipeline.register_to_config(**colors)
        if self_condition:
            pipeline.register_to_config(self_condition=True)
        pipeline.register_to_config(**head_config(palette_head, pixel_likelihood, pixel_likelihood_until))
    else:
        from condiff.pipeline import ConditionalDDPMPipeline

        pipeline = ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=conditions, **colors,
                                           self_condition=self_condition, palette_head=palette_head,
                                           pixel_likelihood=pixel_likelihood,
                                           pixel_likelihood_until=pixel_likelihood_until)
    folder = Path(folder)
    partial = folder / ".partial-model"
    try:
        shutil.rmtree(partial, ignore_errors=True)  # debris of an earlier crash
        folder.mkdir(parents=True, exist_ok=True)
        pipeline.save_pretrained(partial, safe_serialization=True)
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
