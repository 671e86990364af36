"""unconditional: images from nothing (`condiff sample`, the app's Generate tab).

Evaluated by sampling `settings.num` images and scoring them against held-out Nouns in the feature
network's space, beside real vs real (the floor) and trivial baselines (noise, the average Noun).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.tasks.base import AppTab, Task, register_task

if TYPE_CHECKING:
    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.features import NounsFeatureNet
    from condiff.evaluation.report import Report


class UnconditionalTask(Task):
    def evaluate(self, model: str, settings: EvalSettings, net: NounsFeatureNet | None = None) -> Report:
        from condiff.evaluation.evaluators import load_measured
        from condiff.evaluation.features import load_feature_net

        pipeline = load_measured(self, model, settings)
        if settings.data:
            return own_images_report(pipeline, settings, name=model)
        return unconditional_report(pipeline, settings, net or load_feature_net(), name=model)


def unconditional_report(pipeline, settings: EvalSettings, net: NounsFeatureNet, name: str = "") -> Report:
    """Samples from an unconditional pipeline against held-out Nouns, beside the reference rows."""
    from condiff.evaluation import evaluators as ev
    from condiff.evaluation.report import Report, Row

    space = ev.model_space(pipeline, settings, net)
    samples = UNCONDITIONAL.run(pipeline, num=settings.num, steps=settings.steps, seed=settings.seed,
                                output_type="latent", **settings.steering).images
    rows = [Row("model", space.scores(samples, parts=True), name)]
    rows += ev.reference_rows(space, settings)
    notes = [ev.KID_NOTE, ev.PARTS_NOTE, ev.PALETTE_NOTE, ev.FLAT_NOTE]
    return Report("unconditional", rows, settings.describe(), notes, samples=samples, real_row="real vs real")


def own_images_report(pipeline, settings: EvalSettings, name: str = "") -> Report:
    """Samples against a user's own images the model never trained on (settings.data), in a feature space
    that knows no data set (condiff.evaluation.own_images.RandomFeatureSpace): the model's training images are the
    floor, noise and the mean image what doing nothing scores."""
    import torch

    from condiff.evaluation import evaluators as ev
    from condiff.evaluation.own_images import FEATURE_NOTE, RandomFeatureSpace, own_images
    from condiff.evaluation.report import Report, Row

    own = own_images(settings.data, name, pipeline.resolution, settings.num)
    space, count = RandomFeatureSpace(own.truth), len(own.truth)
    samples = UNCONDITIONAL.run(pipeline, num=count, steps=settings.steps, seed=settings.seed,
                                output_type="latent", **settings.steering).images
    noise = torch.rand(own.truth.shape, generator=torch.Generator().manual_seed(settings.seed)) * 2 - 1
    rows = [Row("model", space.scores(samples), name)]
    if len(own.training):
        rows.append(Row("training images", space.scores(own.training[:count]),
                        "floor: images of the model's training data, against these"))
    rows += [Row("noise", space.scores(noise), "baseline: uniform noise"),
             Row("mean image", space.scores(ev.mean_images(own.truth, count)), "baseline: the average image")]
    describe = {**settings.describe(), "images": count}
    return Report("unconditional", rows, describe, [f"measured on {own.what}", FEATURE_NOTE, ev.KID_NOTE,
                                                   ev.FLAT_NOTE], samples=samples)


UNCONDITIONAL = register_task(UnconditionalTask(
    "unconditional", None, "Nouns, unconditional (condiff sample)", "generate images",
    app=AppTab("generate", "Generate", "samples")))
