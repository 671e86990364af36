"""sketch2img: an image from a line drawing (`condiff sketch2img`, the app's Sketch tab).

Evaluated on drawings of held-out Nouns in each style of condiff.evaluation.drawings, read through the
same path as a user's file: does the output have the drawn Noun's silhouette and outlines? Beside the
real Noun (the ceiling), another Noun (chance) and the average Noun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.tasks.base import AppTab, Task, register_task

if TYPE_CHECKING:
    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.features import NounsFeatureNet
    from condiff.evaluation.report import Report


class Sketch2ImgTask(Task):
    def evaluate(self, model: str, settings: EvalSettings, net: NounsFeatureNet | None = None) -> Report:
        import torch

        from condiff.evaluation import drawings as dr
        from condiff.evaluation import evaluators as ev
        from condiff.evaluation import metrics
        from condiff.evaluation.held_out import INPUT_SEED, OTHER_SEED, held_out_nouns
        from condiff.evaluation.report import Report, Row

        pipeline = self.load(model, settings.device, settings.scheduler, settings.steps)
        ev.show_progress(pipeline, self, settings)
        truth = held_out_nouns(settings.num, INPUT_SEED, pipeline.resolution)
        masks = dr.held_out_masks(settings.num, INPUT_SEED)
        space = ev.model_space(pipeline, settings, net)
        sketches = dr.clean_sketch(truth)

        def scores(images: torch.Tensor) -> dict[str, float]:
            return {"silhouette IoU": dr.silhouette_iou(images, truth),
                    "edge F1": metrics.edge_f1(dr.clean_sketch(images), sketches, tolerance=0),
                    **space.scores(images, parts=True)}

        encoder = pipeline.conditions.encoders[pipeline.conditions.names.index(self.condition)]
        rows = []
        for style in settings.styles or dr.STYLES:
            drawn = dr.drawings(style, truth, masks, seed=settings.seed)
            channels = torch.cat([encoder.encode_input(image, pipeline.resolution) for image in drawn])
            outputs = ev.task_outputs(self, pipeline, channels, settings)
            seen = "never in training" if style in dr.UNSEEN_STYLES else "the training sketches' style"
            rows.append(Row(f"model, {style}", scores(outputs), f"{model} ({seen})"))
        rows += [
            Row("real image", scores(truth), "ceiling: the Noun the drawing was made from"),
            Row("other Noun", scores(held_out_nouns(settings.num, OTHER_SEED, pipeline.resolution)),
                "chance: a real Noun that ignores the drawing"),
            Row("mean image", scores(ev.mean_images(truth, settings.num)), "baseline: the average Noun"),
        ]
        return Report("sketch2img", rows, {**settings.describe(), "guidance": settings.guidance,
                                           "silhouette": settings.mode("silhouette")},
                      [DRAWINGS_NOTE, SILHOUETTE_NOTE, EDGE_NOTE, ev.KID_NOTE, ev.PARTS_NOTE, ev.PALETTE_NOTE,
                       ev.FLAT_NOTE], samples=outputs)


DRAWINGS_NOTE = ("styles (condiff.evaluation.drawings): outlines = every colour region's outline, thin pen; simple = "
                 "only body, head and glasses outlines; wobbly = simple, unsteady hand, thick pen; inverted = simple, "
                 "white on black. Each drawing is 256 px, read as a user's file is")
SILHOUETTE_NOTE = ("silhouette IoU: the output's foreground (what differs from its border's colour) against the true "
                   "Noun's")
EDGE_NOTE = ("edge F1: outlines of the output against the true Noun's colour-region outlines, exact pixels (Nouns are "
             "aligned, so with a 1 px tolerance any Noun scores about 0.9)")


SKETCH2IMG = register_task(Sketch2ImgTask(
    "sketch2img", "sketch", "Nouns sketch-to-image, sketch condition (condiff sketch2img)",
    "turn a line drawing into an image", "generated", app=AppTab("sketch", "Sketch", "canvas")))
