"""The drawings condiff eval hands sketch2img: each style is what its name says, and the silhouette
measure tells the drawn Noun from another."""

import numpy as np
import torch

from condiff.conditions.sketch import SketchCondition, foreground
from condiff.evaluation.drawings import (
    DRAWING_SIZE,
    STYLES,
    drawings,
    held_out_masks,
    silhouette_iou,
)
from condiff.evaluation.held_out import INPUT_SEED, OTHER_SEED, held_out_nouns
from condiff.steering.silhouette import FIGURE_CONTRAST


def test_every_style_is_strokes_on_paper_and_inverted_is_simple_in_negative():
    images, masks = held_out_nouns(4, INPUT_SEED), held_out_masks(4, INPUT_SEED)
    drawn = {style: [np.asarray(d) for d in drawings(style, images, masks)] for style in STYLES}
    for style, pictures in drawn.items():
        for picture in pictures:
            assert picture.shape == (DRAWING_SIZE, DRAWING_SIZE) and set(np.unique(picture)) == {0, 255}
            ink = picture == (255 if style == "inverted" else 0)
            assert 0.01 < ink.mean() < 0.5, style  # strokes, not a filled page
    for simple, inverted in zip(drawn["simple"], drawn["inverted"], strict=True):
        assert np.array_equal(simple, 255 - inverted)
    # The simple style leaves interior lines out: far fewer lines than every region's outline, as the model reads them.
    encoder = SketchCondition()

    def line_pixels(style):
        return sum(int((encoder.encode_input(d, 32) > 0).sum()) for d in drawings(style, images, masks))

    assert line_pixels("simple") < 0.8 * line_pixels("outlines")


def near(mask: torch.Tensor, distance: int) -> torch.Tensor:
    """Pixels within `distance` (chessboard) of the mask."""
    size = 2 * distance + 1
    return torch.nn.functional.max_pool2d(mask.float()[None, None], size, 1, distance)[0, 0] > 0


def test_a_simple_drawing_traces_the_silhouette_of_body_head_and_glasses():
    images, masks = held_out_nouns(6, INPUT_SEED), held_out_masks(6, INPUT_SEED)
    encoder = SketchCondition()
    for i, drawing in enumerate(drawings("wobbly", images, masks)):
        lines = encoder.encode_input(drawing, 32)[0, 0] > 0
        parts = torch.from_numpy(masks["body"][i] | masks["head"][i] | masks["glasses"][i])
        edge = parts & near(~parts, 1)  # the silhouette's boundary pixels
        near_lines = near(lines, 2)
        assert (near_lines[edge]).float().mean() > 0.8  # even a wobbly pen keeps the outline within 2 px


def test_silhouette_iou_is_one_for_the_same_noun_and_lower_for_others():
    truth, others = held_out_nouns(50, INPUT_SEED), held_out_nouns(50, OTHER_SEED)
    assert silhouette_iou(truth, truth) == 1.0
    assert 0.5 < silhouette_iou(others, truth) < 0.9
    assert foreground(truth, FIGURE_CONTRAST).float().mean() > 0.2  # a Noun fills a good part of its picture
