"""Silhouette steering: a sketch with `fill` fixes where the figure is, and sampling keeps it there."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from condiff.conditions.sketch import SketchCondition, foreground
from condiff.steering.silhouette import FIGURE_CONTRAST, keep_silhouette, snap_keeping_silhouette

RESOLUTION = 32


def circle_drawing(closed: bool = True) -> Image.Image:
    image = Image.new("L", (256, 256), 255)
    draw = ImageDraw.Draw(image)
    if closed:
        draw.ellipse([64, 64, 192, 192], outline=0, width=4)
    else:
        draw.arc([64, 64, 192, 192], 0, 200, fill=0, width=4)
    return image


def test_the_projected_image_has_exactly_the_given_silhouette():
    torch.manual_seed(0)
    images = torch.rand(3, 3, RESOLUTION, RESOLUTION) * 2 - 1
    images[1] = 0.6  # a flat image: every figure pixel starts on the background colour
    figure = torch.zeros(3, 1, RESOLUTION, RESOLUTION, dtype=torch.bool)
    figure[:, :, 8:30, 6:26] = True
    figure[2] = False  # nothing drawn: left free
    kept = keep_silhouette(images, figure)
    assert torch.equal(foreground(kept[:2], FIGURE_CONTRAST)[:, None], figure[:2])
    assert torch.equal(kept[2], images[2])
    outside = kept[0][:, ~figure[0, 0]]
    assert torch.equal(outside, outside[:, :1].expand_as(outside))  # one background colour
    distinct = figure[0, 0] & ((images[0] - outside[:, :1, None]).abs().amax(dim=0) > 0.5)
    assert torch.equal(kept[0][:, distinct], images[0][:, distinct])  # figure pixels unlike it stay


def test_a_fill_sketch_fixes_the_figure_only_where_its_lines_enclose_something():
    filled, plain = SketchCondition(fill=True), SketchCondition()
    channels = filled.encode_input(circle_drawing(), RESOLUTION)
    figure = filled.figure(channels)
    assert figure.shape == (1, 1, RESOLUTION, RESOLUTION) and figure[0, 0, 16, 16] and not figure[0, 0, 1, 1]
    assert not filled.figure(filled.encode_input(circle_drawing(closed=False), RESOLUTION)).any()
    assert not filled.figure(torch.zeros_like(channels)).any()  # a dropped condition
    assert plain.figure(plain.encode_input(circle_drawing(), RESOLUTION)) is None


def test_snapping_to_the_palette_keeps_figure_pixels_unlike_the_background():
    # A white background, a figure of off-white pixels (pushed just past FIGURE_CONTRAST) and a palette
    # whose nearest colour to them is the background's own: a plain snap would erase the figure.
    palette = torch.tensor([[1.0, 1.0, 1.0], [0.9, 0.9, 0.9], [0.4, 0.4, 0.4], [-1.0, 0.0, 0.0]])
    images = torch.ones(2, 3, RESOLUTION, RESOLUTION)
    figure = torch.zeros(2, 1, RESOLUTION, RESOLUTION, dtype=torch.bool)
    figure[:, :, 10:20, 10:20] = True
    images[:, :, 10:20, 10:20] = 1.0 - 2.2 * FIGURE_CONTRAST
    images[:, 0, 12, 12] = -1.0  # a figure pixel clearly unlike the background keeps its snapped colour
    figure[1] = False  # nothing drawn: left as snapped
    from condiff.palette import nearest_colors

    snapped = nearest_colors(images, palette)
    assert foreground(snapped, FIGURE_CONTRAST).sum() == 2  # only the red pixel of each survives
    kept = snap_keeping_silhouette(snapped, images, figure, palette)
    assert torch.equal(foreground(kept, FIGURE_CONTRAST)[:1], figure[:1, 0])
    on_palette = (kept[0].permute(1, 2, 0).reshape(-1, 1, 3) == palette[None]).all(dim=-1).any(dim=-1)
    assert on_palette.all()
    assert torch.equal(kept[0, :, 11, 11], palette[2])  # the nearest colour that is not background-like
    assert torch.equal(kept[0, :, 12, 12], snapped[0, :, 12, 12])
    assert torch.equal(kept[1], snapped[1])


@pytest.fixture(scope="module")
def fill_pipeline():
    """An untrained tiny sketch-with-fill model: it knows nothing, so any obedience is the steering's."""
    from diffusers import DDPMScheduler

    from condiff.conditions.stack import ConditionStack
    from condiff.config import ModelConfig
    from condiff.model import build_unet
    from condiff.pipeline import ConditionalDDPMPipeline

    torch.manual_seed(0)
    conditions = ConditionStack(conditions=[{"name": "sketch", "fill": True}])
    unet = build_unet(ModelConfig(channels=[32, 32], attention=[False, False]), RESOLUTION,
                      in_channels=3 + conditions.channels)
    scheduler = DDPMScheduler(num_train_timesteps=50, prediction_type="v_prediction")
    return ConditionalDDPMPipeline(unet=unet, scheduler=scheduler, conditions=conditions)


def test_sampling_keeps_the_drawn_silhouette_unless_told_not_to(fill_pipeline):
    drawing = circle_drawing()
    figure = fill_pipeline.conditions.encoders[0].figure(fill_pipeline.encode([drawing]))[:, 0]
    run = {"num_inference_steps": 4, "seed": 0, "output_type": "pt", "palette": "off"}
    kept = fill_pipeline(drawing, **run).images * 2 - 1
    free = fill_pipeline(drawing, silhouette="off", **run).images * 2 - 1
    assert torch.equal(foreground(kept, FIGURE_CONTRAST), figure)
    assert not torch.equal(foreground(free, FIGURE_CONTRAST), figure)


def test_a_bad_silhouette_mode_is_one_line(fill_pipeline):
    from condiff.errors import CondiffError

    with pytest.raises(CondiffError, match="silhouette 'on'") as refused:
        fill_pipeline(circle_drawing(), num_inference_steps=1, silhouette="on")
    assert len(str(refused.value).splitlines()) == 1


def test_sampling_with_a_palette_keeps_the_drawn_silhouette(fill_pipeline):
    from condiff.denoiser import Denoiser
    from condiff.pipeline import ConditionalDDPMPipeline

    grays = [f"#{v:02x}{v:02x}{v:02x}" for v in range(0, 256, 15)]  # close steps: some read as background
    conditions = fill_pipeline.conditions
    with_palette = ConditionalDDPMPipeline(unet=fill_pipeline.unet, scheduler=fill_pipeline.scheduler,
                                           conditions=conditions,
                                           denoiser=Denoiser(condition_channels=conditions.widths, palette=grays))
    with_palette.set_progress_bar_config(disable=True)
    drawing = circle_drawing()
    figure = with_palette.conditions.encoders[0].figure(with_palette.encode([drawing]))[:, 0]
    images = with_palette(drawing, num_inference_steps=4, seed=0, output_type="pt").images * 2 - 1
    assert torch.equal(foreground(images, FIGURE_CONTRAST), figure)
