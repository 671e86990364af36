"""colorize: colour for a grayscale image (`condiff colorize`, the app's Colorize tab).

Colorization keeps the input's own lightness and takes only colour from the model: at the model's
resolution the grayscale condition hands sampling a step that keeps the gray it was given
(condiff.steering.lightness); at full resolution the output's colour (Lab a, b) is combined with the
lightness (L) of the input itself, so every edge and detail is exactly the input's (`recombine_luminance`).

Evaluated on held-out Nouns given as users' 8-bit gray files: PSNR, SSIM, the lightness error, the share
of parts coloured exactly right, and the feature network's scores, beside the true colours (the floor),
the gray file itself and the average Noun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condiff.tasks.base import AppTab, Task, register_task

if TYPE_CHECKING:
    from PIL import Image

    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.features import NounsFeatureNet
    from condiff.evaluation.report import Report


class ColorizeTask(Task):
    def full_resolution(self, source: Image.Image, output: Image.Image) -> Image.Image:
        """The input's own lightness with the model's colour, in Lab."""
        return recombine_luminance(source, output)

    def evaluate(self, model: str, settings: EvalSettings, net: NounsFeatureNet | None = None) -> Report:
        if settings.data:
            return self.evaluate_own(model, settings)
        import torch

        from condiff.evaluation import evaluators as ev
        from condiff.evaluation import metrics
        from condiff.evaluation.held_out import INPUT_SEED, held_out_labels
        from condiff.evaluation.report import Report, Row

        pipeline, truth, outputs = ev.conditional_samples(self, model, settings, ev.gray_file_channels)
        space = ev.model_space(pipeline, settings, net)
        gray = ev.gray_file_images(truth)
        labels = held_out_labels(settings.num, INPUT_SEED)
        visible = ev.visible_parts(settings.num, INPUT_SEED, ("body", "glasses"))

        def scores(images: torch.Tensor) -> dict[str, float]:
            exact = ev.part_colours_exact(images, truth, visible)
            return {"PSNR": metrics.psnr(images, truth), "SSIM": metrics.ssim(images, truth),
                    "luma err": metrics.luma_error(images, gray), "colourful": metrics.colourfulness(images),
                    "body exact": exact["body"], "glasses exact": exact["glasses"],
                    **space.scores(images, labels=labels)}

        rows = [
            Row("model", scores(outputs), model),
            Row("true colour", scores(truth), f"floor (PSNR capped at {metrics.PSNR_CAP:.0f} dB)"),
            Row("gray output", scores(gray), "baseline: the input's gray file as RGB"),
            Row("mean colour", scores(ev.mean_images(truth, settings.num)), "baseline: the average Noun"),
        ]
        return Report("colorize", rows, settings.describe(conditional=True),
                      [LUMA_NOTE, ev.EXACT_NOTE, ev.KID_NOTE, ev.RIGHT_NOTE, ev.PALETTE_NOTE, ev.FLAT_NOTE],
                      samples=outputs, real_row="true colour")


    def evaluate_own(self, model: str, settings: EvalSettings) -> Report:
        """On a user's own images (settings.data) that the model never trained on, given as 8-bit gray files:
        no feature network, so measures that hold for any images, beside doing nothing and a lookup table."""
        import torch

        from condiff.evaluation import evaluators as ev
        from condiff.evaluation import metrics
        from condiff.evaluation.own_images import GrayLevelColours, chroma_error, own_images
        from condiff.evaluation.report import Report, Row

        pipeline = ev.load_measured(self, model, settings)
        own = own_images(settings.data, model, pipeline.resolution, settings.num)
        truth, gray = own.truth, ev.gray_file_images(own.truth)
        outputs = ev.task_outputs(self, pipeline, ev.gray_file_channels(self.encoder(pipeline), truth), settings)
        true_colourfulness = max(metrics.colourfulness(truth), 1e-6)

        def scores(images: torch.Tensor) -> dict[str, float]:
            return {"PSNR": metrics.psnr(images, truth), "SSIM": metrics.ssim(images, truth),
                    "chroma err": chroma_error(images, truth),
                    "colourful": metrics.colourfulness(images) / true_colourfulness,
                    "luma err": metrics.luma_error(images, gray)}

        rows = [Row("model", scores(outputs), model),
                Row("true colour", scores(truth), f"ceiling (PSNR capped at {metrics.PSNR_CAP:.0f} dB)"),
                Row("gray input", scores(gray), "baseline: the gray file itself, no colour")]
        if len(own.training):
            table = GrayLevelColours(own.training)
            rows.append(Row("gray-level table", scores(table.colorize(gray)),
                            f"baseline: the mean colour of each gray level in {len(own.training)} training images"))
        describe = {**settings.describe(conditional=True), "images": len(truth)}
        return Report("colorize", rows, describe, [f"measured on {own.what}", OWN_NOTE, LUMA_NOTE], samples=outputs)


LUMA_NOTE = "luma err: mean |output's gray level - input's gray level| (8-bit, as gray files hold them)"
OWN_NOTE = ("chroma err: mean distance of each pixel's colour (a, b of CIE Lab) from the truth's; colourful: "
            "Hasler-Suesstrunk colourfulness as a share of the truth's (gray 0, the truth 1)")


# Pixels converted to Lab at a time: skimage's conversions make float temporaries of about 100 bytes a pixel,
# which a band of rows keeps to a fixed ~100 MB whatever the image's size (issue 43).
BAND_PIXELS = 1 << 20


def recombine_luminance(source: Image.Image, colour: Image.Image) -> Image.Image:
    """`source`'s lightness at its own size with `colour`'s chroma (bicubic-enlarged), via Lab.

    Memory grows with the image only as 8-bit RGB (the source, the enlarged colour and the output: 9 bytes a
    pixel); the Lab conversion runs in float32 on one band of rows at a time."""
    import warnings

    import numpy as np
    from PIL import Image
    from skimage.color import lab2rgb, rgb2lab

    from condiff.images import to_rgb

    source_rgb = np.asarray(to_rgb(source))
    height, width = source_rgb.shape[:2]
    colour_big = np.asarray(to_rgb(colour).resize((width, height), Image.Resampling.BICUBIC))
    output = np.empty_like(source_rgb)
    rows = max(1, BAND_PIXELS // width)
    with warnings.catch_warnings():
        # Colours outside sRGB are clipped on purpose, below; skimage would warn about it once per band.
        warnings.filterwarnings("ignore", "Conversion from CIE-LAB", UserWarning)
        for top in range(0, height, rows):
            band = slice(top, top + rows)
            lab = rgb2lab(colour_big[band] / np.float32(255))  # uint8 / float32: float32 in [0, 1]
            lab[..., 0] = rgb2lab(source_rgb[band] / np.float32(255))[..., 0]
            output[band] = np.clip(lab2rgb(lab), 0.0, 1.0) * 255.0 + 0.5  # rounded, as the cast truncates
    return Image.fromarray(output)


COLORIZE = register_task(ColorizeTask(
    "colorize", "grayscale", "Nouns colorization, grayscale condition (condiff colorize)", "colour a grayscale image",
    "colorized", full_res_help=" (the input's own luminance with the model's colour, in Lab)",
    app=AppTab("colorize", "Colorize", "upload", button="Colorize", output="Colorized",
               input_label="Image to colorize: grayscale or a photo",
               full_res_label="Also at the input's full resolution (its own lightness, the model's colour)")))
