"""sketch2img: an image from a line drawing (`condiff sketch2img`, the app's Sketch tab).

Evaluated on drawings of held-out Nouns in each style of condiff.evaluation.drawings, read through the
same path as a user's file: does the output have the drawn Noun's silhouette and outlines? Beside the
real Noun (the ceiling), another Noun (chance) and the average Noun. With --data, the same on drawings of
a user's own held-out images (condiff.evaluation.own_drawings), with measures that need no feature network.
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
        if settings.data:
            return self.evaluate_own(model, settings)
        import torch

        from condiff.evaluation import drawings as dr
        from condiff.evaluation import evaluators as ev
        from condiff.evaluation import metrics
        from condiff.evaluation.held_out import INPUT_SEED, OTHER_SEED, held_out_nouns
        from condiff.evaluation.report import Report, Row

        pipeline = ev.load_measured(self, model, settings)
        truth = held_out_nouns(settings.num, INPUT_SEED, pipeline.resolution)
        masks = dr.held_out_masks(settings.num, INPUT_SEED)
        space = ev.model_space(pipeline, settings, net)
        sketches = dr.clean_sketch(truth)

        def scores(images: torch.Tensor) -> dict[str, float]:
            return {"silhouette IoU": dr.silhouette_iou(images, truth),
                    "edge F1": metrics.edge_f1(dr.clean_sketch(images), sketches, tolerance=0),
                    **space.scores(images, parts=True)}

        rows, outputs = self.drawn_rows(
            pipeline, model, settings, settings.styles or dr.STYLES, dr.UNSEEN_STYLES, scores,
            lambda style, encoder: dr.drawings(style, truth, masks, seed=settings.seed))
        rows += [
            Row("real image", scores(truth), "ceiling: the Noun the drawing was made from"),
            Row("other Noun", scores(held_out_nouns(settings.num, OTHER_SEED, pipeline.resolution)),
                "chance: a real Noun that ignores the drawing"),
            Row("mean image", scores(ev.mean_images(truth, settings.num)), "baseline: the average Noun"),
        ]
        return Report("sketch2img", rows, {**settings.describe(conditional=True),
                                           "silhouette": settings.mode("silhouette")},
                      [DRAWINGS_NOTE, SILHOUETTE_NOTE, EDGE_NOTE, ev.KID_NOTE, ev.PARTS_NOTE, ev.PALETTE_NOTE,
                       ev.FLAT_NOTE], samples=outputs, real_row="real image")

    def evaluate_own(self, model: str, settings: EvalSettings) -> Report:
        """On drawings of a user's own images (settings.data) that the model never trained on, in each style of
        condiff.evaluation.own_drawings: silhouette IoU and edge F1, beside the truth, chance and the mean image."""
        import torch

        from condiff.evaluation import drawings as dr
        from condiff.evaluation import evaluators as ev
        from condiff.evaluation import metrics
        from condiff.evaluation import own_drawings as od
        from condiff.evaluation.own_images import own_images
        from condiff.evaluation.report import Report, Row

        pipeline = ev.load_measured(self, model, settings)
        own = own_images(settings.data, model, pipeline.resolution, settings.num)
        truth = own.truth
        background = torch.tensor(own.background, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1.0
        figure = figure_on(truth, background)
        plain = shows_background(figure)
        sketches = dr.clean_sketch(truth)

        def silhouette_iou(masks: torch.Tensor) -> float | None:
            return dr.mask_iou(masks[plain], figure[plain]) if plain.any() else None

        def scores(images: torch.Tensor) -> dict[str, float | None]:
            return {"silhouette IoU": silhouette_iou(figure_on(images, background)),
                    "edge F1": metrics.edge_f1(dr.clean_sketch(images), sketches, tolerance=1)}

        def shapes_iou(shapes: torch.Tensor) -> dict[str, float | None]:
            return {"silhouette IoU": silhouette_iou(shapes), "edge F1": None}

        rows, outputs = self.drawn_rows(
            pipeline, model, settings, settings.styles or od.STYLES, od.UNSEEN_STYLES, scores,
            lambda style, encoder: od.own_drawings(style, truth, settings.seed, encoder.config.threshold),
            shapes_iou)
        rows += [
            Row("truth", scores(truth), "ceiling: the image the drawing was made from"),
            Row("chance", scores(truth.roll(1, 0)), "chance: another held-out image, which ignores the drawing"),
            Row("mean image", scores(ev.mean_images(truth, len(truth))), "baseline: the held-out images' average"),
        ]
        silhouette = (f"silhouette IoU: on the {int(plain.sum())} of {len(truth)} images whose border is at least "
                      f"{PLAIN_BORDER:.0%} background (the colour transparency was composited on, {own.background}), "
                      "the output's figure (what differs from that colour) against the truth's")
        return Report("sketch2img", rows, {**settings.describe(conditional=True), "images": len(truth),
                                           "silhouette": settings.mode("silhouette")},
                      [f"measured on {own.what}", OWN_DRAWINGS_NOTE, silhouette, OWN_EDGE_NOTE], samples=outputs)

    def drawn_rows(self, pipeline, model: str, settings: EvalSettings, styles, unseen, scores, drawings_of,
                   shapes_scores=None):
        """A row per drawing style: the outputs for `drawings_of(style, encoder)` (a user's drawings, PIL
        images), read as a user's file is, and `scores` of them; returns the rows and the last outputs. With
        `shapes_scores` and a sketch with `fill`, a reference row per style too: `shapes_scores` of the
        drawing's filled shapes (N, H, W), what a network that copied its fill channel would score."""
        import torch

        from condiff.evaluation import evaluators as ev
        from condiff.evaluation.report import Row

        encoder = self.encoder(pipeline)
        rows, outputs = [], None
        for style in styles:
            drawn = drawings_of(style, encoder)
            channels = torch.cat([encoder.encode_input(image, pipeline.resolution) for image in drawn])
            outputs = ev.task_outputs(self, pipeline, channels, settings)
            seen = "never in training" if style in unseen else "the training sketches' style"
            rows.append(Row(f"model, {style}", scores(outputs), f"{model} ({seen})"))
            shapes = encoder.figure(channels) if shapes_scores is not None else None
            if shapes is not None:
                rows.append(Row(f"filled shapes, {style}", shapes_scores(shapes[:, 0]),
                                "reference: the drawing's fill channel taken as the figure"))
        return rows, outputs


PLAIN_BORDER = 0.25  # an image shows its background when this share of its border is background


def figure_on(images, background):
    """(N, H, W) bool: the pixels of images (N, 3, H, W) unlike `background` (1, 3, 1, 1), the colour their
    transparency was composited on: their figure, as condiff.steering.silhouette reads one."""
    from condiff.steering.silhouette import reads_as_background

    return ~reads_as_background(images - background, dim=1)


def shows_background(figure):
    """(N,) bool: which images have a background to compare silhouettes on (a transparent one, or one of the
    compositing colour): at least PLAIN_BORDER of their border pixels are not figure. A photograph to its
    edges has none."""
    import torch

    border = torch.cat([figure[:, 0], figure[:, -1], figure[:, 1:-1, 0], figure[:, 1:-1, -1]], dim=1)
    return (~border).float().mean(dim=1) >= PLAIN_BORDER


DRAWINGS_NOTE = ("styles (condiff.evaluation.drawings): outlines = every colour region's outline, thin pen; simple = "
                 "only body, head and glasses outlines; wobbly = simple, unsteady hand, thick pen; inverted = simple, "
                 "white on black. Each drawing is 256 px, read as a user's file is")
SILHOUETTE_NOTE = ("silhouette IoU: the output's foreground (what differs from its border's colour) against the true "
                   "Noun's")
OWN_DRAWINGS_NOTE = ("styles (condiff.evaluation.own_drawings): outlines = every colour region's outline, thin pen; "
                     "wobbly = the figure's outline and its strong inner edges, unsteady hand, thick pen; sparse = "
                     "the figure's outline with gaps and half of its inner lines. Each drawing is 8x the model's size, "
                     "read as a user's file is")
OWN_EDGE_NOTE = ("edge F1: colour-region outlines of the output against the truth's, an edge matching within 1 px "
                 "(chessboard)")
EDGE_NOTE = ("edge F1: outlines of the output against the true Noun's colour-region outlines, exact pixels (Nouns are "
             "aligned, so with a 1 px tolerance any Noun scores about 0.9)")


SKETCH2IMG = register_task(Sketch2ImgTask(
    "sketch2img", "sketch", "Nouns sketch-to-image, sketch condition (condiff sketch2img)",
    "turn a line drawing into an image", "generated", app=AppTab("sketch", "Sketch", "canvas")))
