"""The parts every task's `condiff eval` report is built from (each task's `evaluate`, condiff.tasks).

Every task samples from held-out Nouns (condiff.evaluation.held_out, never the training stream's seed)
and measures in the Nouns feature network's space. Reference rows give the numbers context: real against
real is the floor a perfect model reaches with this many images, and a trivial baseline (noise, a gray
image, the mean image) is what doing nothing scores. This module knows no task: a task is handed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from condiff.config import DEFAULT_PRECISION
from condiff.data.nouns import PART_KINDS
from condiff.evaluation import metrics
from condiff.evaluation.drawings import held_out_masks
from condiff.evaluation.features import NounsFeatureNet, extract, load_feature_net
from condiff.evaluation.held_out import INPUT_SEED, REFERENCE_SEED, held_out_nouns
from condiff.evaluation.report import Row
from condiff.images import to_model_tensor, to_uint8
from condiff.palette import find_palette, from_hex, on_palette_share
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS
from condiff.steering import OPTIONS, check_modes

CONFIDENT = 0.8  # a part counts as recognised when the feature network gives it this probability
EXACT_SHARE = 0.95  # a colorized part is right when this share of its visible pixels has the true colour


@dataclass
class EvalSettings:
    num: int = 500
    steps: int = DEFAULT_SAMPLER_STEPS
    scheduler: str = DEFAULT_SAMPLER
    seed: int = 0
    guidance: float = 1.0
    device: str = "cpu"
    precision: str = DEFAULT_PRECISION  # the number type the UNet computes in (condiff.config.PRECISIONS)
    steering: dict[str, str] = field(default_factory=dict)  # {option: mode}, condiff.steering.OPTIONS; "auto" if not
    styles: tuple[str, ...] | None = None  # sketch2img's drawing styles (None: all, evaluation.drawings.STYLES)
    data: str | None = None  # a user's own images (condiff.evaluation.own_images) instead of held-out Nouns

    def mode(self, option: str) -> str:
        """The steering mode the samples are made with for `option` (its default where not given)."""
        return check_modes(self.steering, OPTIONS)[option]

    def describe(self, conditional: bool = False) -> dict:
        """The settings a report records; a conditional model's include its guidance."""
        data = {"data": self.data} if self.data else {}
        precision = {"precision": self.precision} if self.precision != DEFAULT_PRECISION else {}
        guidance = {"guidance": self.guidance} if conditional else {}
        return {**data, "images": self.num, "sampler": f"{self.scheduler}-{self.steps}", **precision,
                "seed": self.seed, "palette": self.mode("palette"), **guidance}


# Each sampling-time step off: what the network does by itself, beside what the commands give (issue 40).
STEERING_OFF = {option.name: "off" for option in OPTIONS}
AS_RUN, NETWORK_ALONE = "as the commands run it", "on the network alone (every sampling-time step off)"


def as_run_and_alone(task, model: str, settings: EvalSettings) -> list:
    """`task.evaluate` of `model` twice: every steering step at its default, as the commands run it, then
    every one off. Each report's settings say which."""
    net = None if settings.data else load_feature_net()  # loaded once for both
    reports = []
    for label, steering in ((AS_RUN, {}), (NETWORK_ALONE, STEERING_OFF)):
        report = task.evaluate(model, replace(settings, steering=steering), net)
        report.settings = {"measured": label, **report.settings}
        reports.append(report)
    return reports


class FeatureSpace:
    """Caches the reference set's features and palette; scores any image set against them."""

    def __init__(self, net: NounsFeatureNet, reference: torch.Tensor, palette=None) -> None:
        """`palette`: (P, 3) uint8 colours for "on palette" (default: the reference images' own colours)."""
        self.net = net
        self.images = reference
        self.reference, _, _ = extract(net, reference)
        self.palette = palette if palette is not None else find_palette(to_uint8(reference), "kmeans", 4096).colors

    def scores(self, images: torch.Tensor, parts: bool = False,
               labels: torch.Tensor | None = None) -> dict[str, float | None]:
        """FD, KID, the share of pixels on the palette and the flat-area noise; with `parts`, how often the
        feature network recognises parts; with the true `labels` (N, 5), how often it names each part right."""
        features, predicted, confidence = extract(self.net, images)
        kid, _ = metrics.kernel_inception_distance(features, self.reference)
        result = {"FD": metrics.frechet_distance(features, self.reference), "KID": kid,
                  "on palette": on_palette_share(to_uint8(images), self.palette),
                  "flat-area noise": metrics.flat_area_noise(images)}
        if labels is not None:
            for column, kind in enumerate(PART_KINDS[1:], start=1):  # body, accessory, head, glasses
                result[f"{kind} right"] = float((predicted[:, column] == labels[:, column]).float().mean())
        if parts:
            sure = confidence >= CONFIDENT
            result["body ok"] = float(sure[:, PART_KINDS.index("body")].float().mean())
            result["glasses ok"] = float(sure[:, PART_KINDS.index("glasses")].float().mean())
            result["all parts ok"] = float(sure.all(dim=1).float().mean())
        return result


# Notes printed under the tables whose columns they explain.
KID_NOTE = ("KID: kernel inception distance on the feature network (unbiased MMD^2, kernel (x.y/d + 1)^3), "
            "as is, not x1000 as some tools print it; compare it only with other KIDs. Near 0 (below too) means "
            "no difference")
PALETTE_NOTE = ("on palette: share of pixels exactly on the model's palette (the held-out Nouns' colours for a model "
                "without one)")
FLAT_NOTE = ("flat-area noise: over pixels whose 8 neighbours agree within 8 levels, the mean distance from their "
             "mean, in 8-bit levels: grain in flat areas, which FD hardly sees. Real Nouns score under 1")
RIGHT_NOTE = ("body right ... glasses right: share of outputs whose part the feature network names as the true "
              "Noun's part")
PARTS_NOTE = ("body ok, glasses ok, all parts ok: share of images whose part the feature network names with "
              f"probability >= {CONFIDENT}. A blurred average can be named with confidence though no Noun looks like "
              "it (the mean image row): read them beside FD, and 'all parts ok' before the others")
EXACT_NOTE = (f"body exact, glasses exact: share of outputs whose visible body (glasses) pixels have the true Noun's "
              f"exact colours, at least {EXACT_SHARE:.0%} of them")


def load_measured(task, model: str, settings: EvalSettings):
    """`model` loaded for `task` (a condiff.tasks Task) to sample as `settings` say, with a progress bar over its
    denoising steps: sampling is most of an evaluation's time."""
    pipeline = task.load(model, settings.device, settings.scheduler, settings.steps, settings.precision)
    pipeline.set_progress_bar_config(desc=f"eval {task.name}: sampling {settings.num} images", leave=False)
    return pipeline


def mean_images(reference: torch.Tensor, num: int) -> torch.Tensor:
    return reference.mean(0, keepdim=True).expand(num, -1, -1, -1).clone()


def model_space(pipeline, settings: EvalSettings, net: NounsFeatureNet | None) -> FeatureSpace:
    """The held-out reference set in the feature network's space, with the model's palette if it has one."""
    colors = pipeline.denoiser.config.palette
    return FeatureSpace(net or load_feature_net(), held_out_nouns(settings.num, REFERENCE_SEED, pipeline.resolution),
                        None if colors is None else from_hex(colors))


def reference_rows(space: FeatureSpace, settings: EvalSettings) -> list[Row]:
    """Real vs real (the floor), uniform noise and the average Noun, scored like a model's samples."""
    reference, resolution = space.images, space.images.shape[-1]
    generator = torch.Generator().manual_seed(settings.seed)
    noise = torch.rand(reference.shape, generator=generator) * 2 - 1
    return [
        Row("real vs real", space.scores(held_out_nouns(settings.num, INPUT_SEED, resolution), parts=True),
            "floor: other held-out Nouns"),
        Row("noise", space.scores(noise, parts=True), "baseline: uniform noise"),
        Row("mean image", space.scores(mean_images(reference, settings.num), parts=True),
            "baseline: the average Noun"),
    ]


def conditional_samples(task, model: str, settings: EvalSettings, condition_of):
    """Held-out Nouns, and the outputs of `task` (a condiff.tasks Task) when the model is given only the
    task's condition, `condition_of(encoder, truth)`."""
    pipeline = load_measured(task, model, settings)
    truth = held_out_nouns(settings.num, INPUT_SEED, pipeline.resolution)
    outputs = task_outputs(task, pipeline, condition_of(task.encoder(pipeline), truth), settings)
    return pipeline, truth, outputs


def task_outputs(task, pipeline, channels: torch.Tensor, settings: EvalSettings) -> torch.Tensor:
    """The outputs of `task` (a condiff.tasks Task) for the channels of its own condition (N, C, H, W). A
    model's other conditions get zeros, which mean "not given" (the model met them in training through
    condition dropout)."""
    stack = pipeline.conditions
    full = torch.zeros(len(channels), stack.channels, *channels.shape[-2:])
    full[:, stack.channel_slices[stack.names.index(task.condition)]] = channels
    return task.run(pipeline, condition_channels=full, steps=settings.steps, guidance=settings.guidance,
                    seed=settings.seed, output_type="latent", **settings.steering).images


# --- the held-out Nouns as a colorizer's inputs, and its measures -------------------------------


def gray_files(truth: torch.Tensor) -> list:
    """Each Noun as a user's gray file holds it: an 8-bit "L" image (PIL's conversion). Its gray is
    the luma rounded to a whole level, which is all a gray Noun tells a colorizer."""
    return [Image.fromarray(image).convert("L") for image in to_uint8(truth)]


def gray_file_images(truth: torch.Tensor) -> torch.Tensor:
    """The gray files as RGB images in [-1, 1] (N, 3, H, W): a colorizer's input as a tensor, and the
    "gray output" baseline."""
    return to_model_tensor(np.stack([np.asarray(file.convert("RGB")) for file in gray_files(truth)]))


def gray_file_channels(encoder, truth: torch.Tensor) -> torch.Tensor:
    """The encoder's channels for the Nouns' gray files, read as `condiff colorize gray.png` reads them."""
    return torch.cat([encoder.encode_input(file, truth.shape[-1]) for file in gray_files(truth)])


def visible_parts(num: int, seed: int, kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """{part: (num, 32, 32) bool} where each held-out Noun shows that part (no later layer covers it)."""
    layers = PART_KINDS[1:]  # body, accessory, head, glasses, bottom first
    masks = held_out_masks(num, seed, layers)
    visible = {}
    for kind in kinds:
        above = np.any([masks[later] for later in layers[layers.index(kind) + 1:]], axis=0)  # False for the top one
        visible[kind] = torch.from_numpy(masks[kind] & ~above)
    return visible


def part_colours_exact(images: torch.Tensor, truth: torch.Tensor, visible: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per part: the share of images whose visible pixels of the part are at least EXACT_SHARE exactly
    the truth's colours (8-bit), among the images that show the part (an accessory can hide a body)."""
    same = torch.from_numpy((to_uint8(images) == to_uint8(truth)).all(axis=-1))
    result = {}
    for kind, mask in visible.items():
        shown = mask.sum(dim=(1, 2))
        right = (same & mask).sum(dim=(1, 2)) / shown.clamp(min=1)
        result[kind] = float((right >= EXACT_SHARE)[shown > 0].float().mean())
    return result
