"""Model cards: the README.md that `condiff train` writes into every model folder, and `condiff info`.

The card follows Hugging Face's format (YAML metadata between `---` lines, then Markdown), so a folder
pushed to the Hub is described there as it is here: what it was trained on, how long, its conditions
and the packages that provide them, the final sample grid and the resolved recipe.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condiff.errors import CondiffError

if TYPE_CHECKING:
    from condiff.denoiser import Denoiser

CARD = "README.md"


def metadata(recipe: dict[str, Any], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Hugging Face card metadata for a model trained with `recipe` (a resolved recipe as a dict)."""
    from condiff.data.sources import describe_source

    source, init_from = recipe["data"]["source"], recipe["model"]["init_from"]
    tags = ["condiff", "diffusers", "pixel-space diffusion", *(c["name"] for c in conditions)]
    if source == "nouns":
        tags.append("pixel-art")
    meta: dict[str, Any] = {
        "library_name": "diffusers",
        # The built-in Nouns artwork is CC0; for your own data, choose the licence that fits it.
        "license": "cc0-1.0" if source == "nouns" else "other",
        "tags": tags,
        "pipeline_tag": "image-to-image" if conditions else "unconditional-image-generation",
    }
    if init_from:
        meta["base_model"] = init_from
    with contextlib.suppress(CondiffError):
        if describe_source(source) == "hub":
            meta["datasets"] = [source]
    return meta


def palette_head_note(pixel_likelihood: bool, until: int | None = None) -> str:
    """A model card's paragraph on a palette head, with or without the pixel likelihood (fading out by timestep
    `until`)."""
    if not pixel_likelihood:
        likelihood = "it samples without each noisy pixel's own likelihood (`pixel_likelihood: false`)"
    else:
        likelihood = "the logits are added to each noisy pixel's own log-likelihood under each colour"
        if until is not None:
            likelihood += f", at full weight at t = 0 fading to none at t = {until}"

    return ("Palette head (condiff.palette_head): the UNet outputs one logit per palette colour, and its clean-image "
            "estimate is the expected colour (trained with the squared error of the output that estimate implies "
            f"plus a cross-entropy on the odds); {likelihood}. Sample it with condiff; diffusers' own `DDPMPipeline` "
            "loads it but cannot sample it.")


def model_card(recipe: dict[str, Any], summary: dict[str, Any], conditions: list[dict[str, Any]],
               denoiser: Denoiser | None = None) -> str:
    """The card's text. `conditions`: {name, dropout, package, **settings} per condition, in order;
    `denoiser`: the folder's (condiff.denoiser): whether it holds a palette (summary["palette"] says which),
    is self-conditioned, has a palette head and how that head reads its odds."""
    import yaml

    settings = dict(denoiser.config) if denoiser is not None else {}
    palette_saved = settings.get("palette") is not None
    name = Path(recipe["train"]["output_dir"]).name
    lines = ["---", yaml.safe_dump(metadata(recipe, conditions), sort_keys=False).strip(), "---", "",
             f"# {name}", "",
             f"A condiff model trained on `{recipe['data']['source']}` at {recipe['data']['resolution']} px: "
             f"{summary['steps']} steps{_planned(summary)} in {summary['seconds'] / 60:.1f} minutes, final loss "
             f"{summary['final_loss'] if summary['final_loss'] is None else round(summary['final_loss'], 4)}"
             f"{', EMA weights' if summary.get('ema') else ''}.", ""]
    if summary.get("palette"):
        lines += [f"Palette (saved in denoiser/config.json, see docs/sample.md): {summary['palette']}."
                  + (" Sampling uses it unless told `--palette off`." if palette_saved else ""), ""]
    if settings.get("self_condition"):
        lines += ["Self-conditioned (arxiv 2208.04202): the UNet's last 3 input channels take its previous estimate "
                  "of the clean image. Sample it with condiff (the commands, or `condiff.load_pipeline`); "
                  "diffusers' own `DDPMPipeline` loads it but cannot sample it.", ""]
    if settings.get("luma_channel") is not None:
        lines += ["Chroma only (`model.diffuse: chroma`): the UNet denoises the image's BT.601 chroma (2 channels), "
                  f"and each output is condition channel {settings['luma_channel']}'s luma with it, so its "
                  "lightness is the input's exactly.", ""]
    if settings.get("palette_head"):
        lines += [palette_head_note(settings["pixel_likelihood"], settings["pixel_likelihood_until"]), ""]
    if summary.get("condition_use"):
        lines += _condition_use_lines(summary["condition_use"])
    if conditions:
        lines += ["## Conditions", "", "| condition | package | dropout | settings |", "|---|---|---|---|"]
        for spec in conditions:
            settings = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "dropout", "package"))
            lines.append(f"| {spec['name']} | {spec.get('package', '')} | {spec['dropout']} | {settings} |")
        lines.append("")
    command = "condiff generate --model . --input IMAGE" if conditions else "condiff sample --model ."
    lines += ["## Samples", "", "![final samples](samples/final.png)", "", "## Use", "", "```bash", command,
              "```", "", "```python", "import condiff", "", "pipeline = condiff.load_pipeline(\".\")", "```", "",
              "## Recipe (every key resolved)", "", "```yaml",
              yaml.safe_dump(recipe, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def _condition_use_lines(use: dict[str, Any]) -> list[str]:
    """The last condition-use gap of training (condiff.training.condition_use), by band of timesteps."""
    lines = ["## Does it use its condition?", "",
             f"The loss on {use['on']} with their own conditions and with the conditions shuffled across them, "
             "at the last log of training. A gap near 0: the network ignores its condition.", "",
             "| timesteps | loss, true condition | loss, shuffled | gap |", "|---|---|---|---|"]
    lines += [f"| {band} | {true:.4f} | {shuffled:.4f} | {gap:.4f} |" for band, true, shuffled, gap in use["bands"]]
    return [*lines, f"| mean | | | {use['gap']:.4f} |", ""]


def _planned(summary: dict[str, Any]) -> str:
    """A run that train.max_minutes stopped early says how many steps it planned."""
    planned = summary.get("max_steps")
    return f" of {planned} planned (train.max_minutes stopped it)" if planned and summary["steps"] < planned else ""


def write_model_card(folder: Path, recipe: dict[str, Any], summary: dict[str, Any], stack,
                     denoiser: Denoiser | None = None) -> None:
    """Write README.md into a trained model folder (`stack`: its ConditionStack, or None; `denoiser`: its
    Denoiser)."""
    conditions = list(stack.config.conditions) if stack is not None else []  # each with its package
    (Path(folder) / CARD).write_text(model_card(recipe, summary, conditions, denoiser), encoding="utf-8")


EVALUATION = "## Evaluation (`condiff eval`, at the end of training)"


def add_evaluation(folder: Path, tables: str, reports_json: str) -> None:
    """An evaluation's `tables` (condiff.evaluation.report.fenced_tables) into the folder's card, before its
    samples (replacing an earlier evaluation), and its reports (report.reports_json) to eval.json."""
    from condiff.images import write_bytes_atomic

    card = (Path(folder) / CARD).read_text(encoding="utf-8")
    if EVALUATION in card:
        before, rest = card.split(EVALUATION, 1)
        card = before + rest[rest.index("\n## ") + 1:]
    before, samples, after = card.partition("## Samples")
    card = f"{before}{EVALUATION}\n\n{tables}\n\n{samples}{after}"
    write_bytes_atomic(Path(folder) / "eval.json", lambda tmp: Path(tmp).write_text(reports_json, encoding="utf-8"))
    write_bytes_atomic(Path(folder) / CARD, lambda tmp: Path(tmp).write_text(card, encoding="utf-8"))


def describe(folder: str | Path) -> str:
    """`condiff info`: the folder's model card, or for a folder without one what its configs say."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CondiffError(f"{folder}: no such model folder; give a folder written by condiff train")
    if (folder / CARD).is_file():
        return (folder / CARD).read_text(encoding="utf-8")
    from condiff.model_folder import model_kind

    lines = [f"{folder}: a {model_kind(folder)} model (no {CARD}: written before model cards, or not by condiff)"]
    for part in ("unet/config.json", "scheduler/scheduler_config.json", "conditions/config.json"):
        path = folder / part
        if path.is_file():
            values = json.loads(path.read_text(encoding="utf-8"))
            shown = {k: v for k, v in values.items() if not k.startswith("_")}
            lines.append(f"{part}: {json.dumps(shown)}")
    return "\n".join(lines)
