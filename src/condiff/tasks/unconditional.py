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
        from condiff.evaluation.evaluators import show_progress
        from condiff.evaluation.features import load_feature_net

        pipeline = self.load(model, settings.device, settings.scheduler, settings.steps)
        show_progress(pipeline, self, settings)
        return unconditional_report(pipeline, settings, net or load_feature_net(), name=model)


def unconditional_report(pipeline, settings: EvalSettings, net: NounsFeatureNet, name: str = "",
                         references: bool = True) -> Report:
    """Samples from an unconditional pipeline against held-out Nouns; `references=False` leaves out the
    reference rows (for benchmarks that score many models against one set of references)."""
    from condiff.evaluation import evaluators as ev
    from condiff.evaluation.report import Report, Row

    space = ev.model_space(pipeline, settings, net)
    samples = UNCONDITIONAL.run(pipeline, num=settings.num, steps=settings.steps, seed=settings.seed,
                                output_type="latent", **settings.steering).images
    rows = [Row("model", space.scores(samples, parts=True), name)]
    if references:
        rows += ev.reference_rows(space, settings)
    notes = [ev.KID_NOTE, ev.PARTS_NOTE, ev.PALETTE_NOTE, ev.FLAT_NOTE]
    return Report("unconditional", rows, settings.describe(), notes, samples=samples)


UNCONDITIONAL = register_task(UnconditionalTask(
    "unconditional", None, "Nouns, unconditional (condiff sample)", "generate images",
    app=AppTab("generate", "Generate", "samples")))
