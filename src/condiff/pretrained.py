"""The models that ship inside the package, so a new user gets pictures without training first.

Each is a diffusers pipeline folder under `condiff/models/<name>/` (fp16 safetensors, a few MB) with a
model card `README.md`. Commands use them when `--model` is omitted.
"""

from __future__ import annotations

from pathlib import Path

from condiff.errors import CondiffError

MODELS_ROOT = Path(__file__).parent / "models"

# Which shipped model each command uses by default.
SHIPPED = {
    "unconditional": "Nouns, unconditional (condiff sample)",
    "colorize": "Nouns colorization, grayscale condition (condiff colorize)",
    "sketch2img": "Nouns sketch-to-image, sketch condition (condiff sketch2img)",
}


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model, or a one-line error saying how to get a model instead."""
    if name not in SHIPPED:
        raise CondiffError(f"{name}: no such shipped model; shipped models are {', '.join(SHIPPED)}")
    folder = MODELS_ROOT / name
    if not (folder / "model_index.json").is_file():
        raise CondiffError(f"the shipped {name} model is missing from {folder}; reinstall condiff, or train one "
                           f"(condiff train recipes/{name}.yaml) and pass --model outputs/{name}")
    return folder


def available_models() -> dict[str, Path]:
    """Shipped models present in this installation, by name."""
    return {name: MODELS_ROOT / name for name in SHIPPED if (MODELS_ROOT / name / "model_index.json").is_file()}


def resolve_model(model: str | None, name: str) -> str:
    """`--model` as given, or the shipped model `name` when it was omitted."""
    return model if model else str(shipped_model_path(name))
