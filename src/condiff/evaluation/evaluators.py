"""`condiff eval`: one report per task (`condiff.tasks`), each with reference rows measured in the same run.

Every task samples from held-out Nouns (never the training stream's seed) and measures in the Nouns
feature network's space. Reference rows give the numbers context: real against real is the floor a
perfect model reaches with this many images, and a trivial baseline (noise, a gray image, the mean
image) is what doing nothing scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from condiff.conditions.base import luma
from condiff.data.nouns import PART_KINDS, NounsDataset
from condiff.evaluation import metrics
from condiff.evaluation.features import NounsFeatureNet, extract, load_feature_net
from condiff.evaluation.report import Report, Row
from condiff.images import to_model_tensor
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS
from condiff.tasks import UNCONDITIONAL, Task

# Held-out sets of Nouns (training uses data.seed 0): the reference set, the inputs, and other Nouns.
REFERENCE_SEED, INPUT_SEED, OTHER_SEED = 1001, 1002, 1003
CONFIDENT = 0.8  # a part counts as recognised when the feature network gives it this probability


@dataclass
class EvalSettings:
    num: int = 500
    steps: int = DEFAULT_SAMPLER_STEPS
    scheduler: str = DEFAULT_SAMPLER
    seed: int = 0
    guidance: float = 1.0
    device: str = "cpu"

    def describe(self) -> dict:
        return {"images": self.num, "sampler": f"{self.scheduler}-{self.steps}", "seed": self.seed}


def held_out_nouns(num: int, seed: int, resolution: int = 32) -> torch.Tensor:
    """`num` rendered Nouns in [-1, 1], every second one mirrored as in training (random_flip)."""
    dataset = NounsDataset(num, seed=seed)
    images = to_model_tensor(dataset.art.render_batch([dataset.noun(i) for i in range(num)]))
    images[1::2] = images[1::2].flip(-1)
    if resolution != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="nearest-exact")
    return images


class FeatureSpace:
    """Caches the reference set's features; scores any image set against it."""

    def __init__(self, net: NounsFeatureNet, reference: torch.Tensor) -> None:
        self.net = net
        self.images = reference
        self.reference, _, _ = extract(net, reference)

    def scores(self, images: torch.Tensor, parts: bool = False) -> dict[str, float]:
        features, _, confidence = extract(self.net, images)
        kid, _ = metrics.kernel_inception_distance(features, self.reference)
        result = {"FD": metrics.frechet_distance(features, self.reference), "KID": kid}
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
PARTS_NOTE = ("body ok, glasses ok, all parts ok: share of images whose part the feature network names with "
              f"probability >= {CONFIDENT}. A blurred average can be named with confidence though no Noun looks like "
              "it (the mean image row): read them beside FD, and 'all parts ok' before the others")


def show_progress(pipeline, task: Task, settings: EvalSettings) -> None:
    """Sampling is most of an evaluation's time: a progress bar over its denoising steps."""
    pipeline.set_progress_bar_config(desc=f"eval {task.name}: sampling {settings.num} images", leave=False)


def mean_images(reference: torch.Tensor, num: int) -> torch.Tensor:
    return reference.mean(0, keepdim=True).expand(num, -1, -1, -1).clone()


def evaluate_unconditional(task: Task, model: str, settings: EvalSettings,
                           net: NounsFeatureNet | None = None) -> Report:
    pipeline = task.load(model, settings.device, settings.scheduler, settings.steps)
    show_progress(pipeline, task, settings)
    return unconditional_report(pipeline, settings, net or load_feature_net(), name=model)


def unconditional_report(pipeline, settings: EvalSettings, net: NounsFeatureNet, name: str = "",
                         references: bool = True) -> Report:
    """Samples from an unconditional pipeline against held-out Nouns; `references=False` leaves out the
    reference rows (for benchmarks that score many models against one set of references)."""
    space = FeatureSpace(net, held_out_nouns(settings.num, REFERENCE_SEED, pipeline.resolution))
    samples = UNCONDITIONAL.run(pipeline, num=settings.num, steps=settings.steps, seed=settings.seed,
                                output_type="latent").images
    rows = [Row("model", space.scores(samples, parts=True), name)]
    if references:
        rows += reference_rows(space, settings)
    return Report("unconditional", rows, settings.describe(), [KID_NOTE, PARTS_NOTE], samples=samples)


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


def conditional_samples(task: Task, model: str, settings: EvalSettings, condition_of):
    """Held-out Nouns, and the task's outputs when the model is given only the task's condition,
    `condition_of(encoder, truth)`: a model's other conditions get zeros, which mean "not given"
    (the model met them in training through condition dropout)."""
    pipeline = task.load(model, settings.device, settings.scheduler, settings.steps)
    show_progress(pipeline, task, settings)
    truth = held_out_nouns(settings.num, INPUT_SEED, pipeline.resolution)
    stack = pipeline.conditions
    index = stack.names.index(task.condition)
    channels = torch.zeros(len(truth), stack.channels, *truth.shape[-2:])
    channels[:, stack.channel_slices[index]] = condition_of(stack.encoders[index], truth)
    outputs = task.run(pipeline, condition_channels=channels, steps=settings.steps, guidance=settings.guidance,
                       seed=settings.seed, output_type="latent").images
    return pipeline, truth, outputs


def evaluate_colorize(task: Task, model: str, settings: EvalSettings,
                      net: NounsFeatureNet | None = None) -> Report:
    def gray_channel(encoder, truth):  # the grayscale encoder's channel for the truth (luma)
        return encoder.encode_training(truth)

    pipeline, truth, outputs = conditional_samples(task, model, settings, gray_channel)
    space = FeatureSpace(net or load_feature_net(), held_out_nouns(settings.num, REFERENCE_SEED, pipeline.resolution))
    gray = luma(truth).expand(-1, 3, -1, -1).contiguous()

    def scores(images: torch.Tensor) -> dict[str, float]:
        return {"PSNR": metrics.psnr(images, truth), "SSIM": metrics.ssim(images, truth),
                "luma err": metrics.luma_error(images, truth), "colourful": metrics.colourfulness(images),
                **space.scores(images)}

    rows = [
        Row("model", scores(outputs), model),
        Row("true colour", scores(truth), f"floor (PSNR capped at {metrics.PSNR_CAP:.0f} dB)"),
        Row("gray output", scores(gray), "baseline: the input's gray as RGB"),
        Row("mean colour", scores(mean_images(truth, settings.num)), "baseline: the average Noun"),
    ]
    return Report("colorize", rows, {**settings.describe(), "guidance": settings.guidance},
                  ["luma err: mean |output luma - input luma| in 8-bit levels", KID_NOTE], samples=outputs)


def clean_sketch(images: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """The sketch of a Noun without training augmentations: its colour-region outlines."""
    from condiff.conditions.sketch import region_outlines

    return region_outlines(images, threshold)


def evaluate_sketch2img(task: Task, model: str, settings: EvalSettings,
                        net: NounsFeatureNet | None = None) -> Report:
    from condiff.conditions.sketch import to_channel

    def sketch_condition(encoder, truth):  # the outlines without training augmentations
        return to_channel(clean_sketch(truth))

    pipeline, truth, outputs = conditional_samples(task, model, settings, sketch_condition)
    space = FeatureSpace(net or load_feature_net(), held_out_nouns(settings.num, REFERENCE_SEED, pipeline.resolution))
    sketches = clean_sketch(truth)

    def scores(images: torch.Tensor) -> dict[str, float]:
        return {"edge F1": metrics.edge_f1(clean_sketch(images), sketches, tolerance=0),
                **space.scores(images, parts=True)}

    rows = [
        Row("model", scores(outputs), model),
        Row("real image", scores(truth), "floor: the Noun the sketch came from"),
        Row("other Noun", scores(held_out_nouns(settings.num, OTHER_SEED, pipeline.resolution)),
            "baseline: a real Noun that ignores the sketch"),
        Row("mean image", scores(mean_images(truth, settings.num)), "baseline: the average Noun"),
    ]
    return Report("sketch2img", rows, {**settings.describe(), "guidance": settings.guidance},
                  ["edge F1: outlines of the output against the input sketch, exact pixels (Nouns are "
                   "aligned, so with a 1 px tolerance any Noun scores about 0.9)", KID_NOTE, PARTS_NOTE],
                  samples=outputs)


# By task name; each is called as evaluator(task, model, settings, net) through `Task.evaluate`.
EVALUATORS = {"unconditional": evaluate_unconditional, "colorize": evaluate_colorize,
              "sketch2img": evaluate_sketch2img}

