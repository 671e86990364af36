"""The built-in condition encoders: shapes and ranges, determinism, recorded settings, users' images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

from condiff.conditions import ConditionEncoder, get_condition, list_conditions
from condiff.data.nouns import NounsDataset
from condiff.images import to_model_tensor

BUILT_INS = {"grayscale": 1, "canny": 1, "sketch": 1, "lowres": 3, "inpaint": 4}
NON_DEFAULT_SETTINGS = {
    "grayscale": {"resize": "lanczos", "level_features": 3},
    "canny": {"low_threshold": 50, "high_threshold": 120, "resize": "nearest"},
    "sketch": {"thickness_jitter": 1.0, "stroke_dropout": 0.3, "max_shift": 2.0, "threshold": 0.2,
               "interior_dropout": 0.5, "fill": True, "fill_gap": 3.0, "fill_background": "corners",
               "figure_consistency": 0.5, "figure_where": "agreed", "edge_where": "agreed"},
    "lowres": {"factor": 2},
    "inpaint": {"min_size": 0.1, "max_size": 0.3},
}
RANDOM = ("sketch", "inpaint")
RESOLUTION = 32


@pytest.fixture(scope="module")
def nouns() -> torch.Tensor:
    dataset = NounsDataset(size=4)
    return to_model_tensor(np.stack([dataset[i]["image"] for i in range(2)]))


def encoder(name: str, **settings) -> ConditionEncoder:
    return get_condition(name)(**settings)


def assert_condition(channels: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert channels.shape == shape
    assert channels.dtype == torch.float32
    assert channels.min() >= -1.0 and channels.max() <= 1.0


def lines_of(channel: torch.Tensor) -> np.ndarray:
    return (channel[0, 0] > 0).numpy()


# ---------------------------------------------------------------------------------------------------
# The contract every encoder keeps
# ---------------------------------------------------------------------------------------------------


def test_built_ins_are_registered_with_their_channels():
    assert set(BUILT_INS) <= set(list_conditions())
    for name, channels in BUILT_INS.items():
        cls = get_condition(name)
        assert cls.name == name and cls().num_channels == channels


@pytest.mark.parametrize("name", BUILT_INS)
def test_training_channels_have_shape_range_and_dtype(name, nouns):
    assert_condition(encoder(name).encode_training(nouns), (2, BUILT_INS[name], RESOLUTION, RESOLUTION))


@pytest.mark.parametrize("name", BUILT_INS)
def test_training_is_deterministic_under_the_global_seed(name, nouns):
    enc = encoder(name)
    torch.manual_seed(7)
    first = enc.encode_training(nouns)
    torch.manual_seed(7)
    assert torch.equal(first, enc.encode_training(nouns))
    if name in RANDOM:
        torch.manual_seed(8)
        assert not torch.equal(first, enc.encode_training(nouns))


@pytest.mark.parametrize("name", BUILT_INS)
def test_settings_survive_a_config_round_trip(name, nouns, tmp_path):
    cls = get_condition(name)
    original = cls(**NON_DEFAULT_SETTINGS[name])
    original.save_config(tmp_path)
    restored = cls.from_config(cls.load_config(tmp_path))
    assert restored.to_dict() == original.to_dict() == {"name": name, **NON_DEFAULT_SETTINGS[name]}
    torch.manual_seed(0)
    expected = original.encode_training(nouns)
    torch.manual_seed(0)
    assert torch.equal(restored.encode_training(nouns), expected)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("grayscale", {"resize": "smooth"}),
        ("grayscale", {"level_features": 8}),
        ("grayscale", {"level_features": 2.5}),
        ("canny", {"low_threshold": 200, "high_threshold": 100}),
        ("sketch", {"stroke_dropout": 1.0}),
        ("sketch", {"max_shift": -1.0}),
        ("sketch", {"interior_dropout": 1.5}),
        ("sketch", {"fill": "yes"}),
        ("lowres", {"factor": 0}),
        ("inpaint", {"min_size": 0.7, "max_size": 0.5}),
    ],
)
def test_bad_settings_are_refused(name, settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        encoder(name, **settings)


# ---------------------------------------------------------------------------------------------------
# Users' images of every mode and size
# ---------------------------------------------------------------------------------------------------


def user_image(mode: str, width: int, height: int) -> Image.Image:
    """A picture with shapes and a transparent corner, in `mode`."""
    rgba = Image.new("RGBA", (width, height), (230, 220, 200, 255))
    draw = ImageDraw.Draw(rgba)
    draw.rectangle([width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=(200, 30, 40, 255))
    draw.line([0, 0, width - 1, height - 1], fill=(20, 20, 120, 255), width=max(1, width // 16))
    draw.rectangle([0, 0, width // 3, height // 5], fill=(0, 0, 0, 0))
    if mode == "P":
        paletted = rgba.convert("RGB").quantize(colors=8)
        paletted.info["transparency"] = 0
        return paletted
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgba.convert("L"), dtype=np.uint16) * 257)
    return rgba if mode == "RGBA" else rgba.convert(mode)


@pytest.mark.parametrize("name", BUILT_INS)
@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"])
@pytest.mark.parametrize("size", [(17, 23), (32, 32), (300, 200)])
def test_users_images_of_any_mode_and_size_are_accepted(name, mode, size):
    image = user_image(mode, *size)
    assert image.mode == mode
    channels = encoder(name).encode_input(image, RESOLUTION)
    assert_condition(channels, (1, BUILT_INS[name], RESOLUTION, RESOLUTION))


# ---------------------------------------------------------------------------------------------------
# grayscale
# ---------------------------------------------------------------------------------------------------


def test_grayscale_of_a_grey_image_equals_that_of_its_rgb_version():
    grey = user_image("L", 300, 200)
    enc = encoder("grayscale")
    assert torch.equal(enc.encode_input(grey, RESOLUTION), enc.encode_input(grey.convert("RGB"), RESOLUTION))


def test_grayscale_uses_the_luma_of_pil_l_mode():
    image = user_image("RGB", 32, 32)
    expected = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32)) / 127.5 - 1.0
    assert torch.allclose(encoder("grayscale").encode_input(image, RESOLUTION)[0, 0], expected, atol=1 / 127.5)


def test_grayscale_level_features_tell_neighbouring_levels_apart_and_match_a_users_8_bit_file():
    enc = encoder("grayscale", level_features=7)
    assert enc.num_channels == 15
    levels = torch.arange(256, dtype=torch.float32)
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8)[None], (256, 1)))  # one level per column
    channels = enc.encode_input(ramp, 256)
    assert_condition(channels, (1, 15, 256, 256))
    features = channels[0, 1:, 0, :].T  # (256 levels, 14)
    gaps = torch.cdist(features, features) + torch.eye(256) * 10
    assert gaps.min() > 0.5  # every two levels, neighbours too, are far apart in the features
    assert torch.allclose(channels[0, 0, 0], levels / 127.5 - 1)  # the first channel is the luma
    (keep,) = enc.steering(channels, {"lightness": "auto"})  # the output keeps the first channel's luma
    assert torch.equal(keep.lightness, channels[:, :1]) and enc.steering(channels, {"lightness": "off"}) == []
    assert [panel.shape for panel in enc.panels(channels[0])] == [(1, 256, 256)]  # condiff encode: the luma
    # the same gray levels from training images (RGB in [-1, 1]) give exactly the user's channels
    rgb = (levels / 127.5 - 1).view(1, 1, 1, 256).expand(1, 3, 256, 256)
    assert torch.allclose(enc.encode_training(rgb), channels, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# canny
# ---------------------------------------------------------------------------------------------------


def test_canny_finds_edges_on_a_noun_and_none_on_a_flat_image(nouns):
    enc = encoder("canny")
    assert (enc.encode_training(nouns) > 0).flatten(1).sum(1).min() > 20
    flat = torch.full((1, 3, RESOLUTION, RESOLUTION), 0.3)
    assert (enc.encode_training(flat) == -1).all()
    assert (enc.encode_input(Image.new("RGB", (50, 40), (90, 160, 30)), RESOLUTION) == -1).all()


# ---------------------------------------------------------------------------------------------------
# sketch
# ---------------------------------------------------------------------------------------------------


def test_sketch_outlines_a_square_and_leaves_a_flat_image_blank():
    enc = encoder("sketch", stroke_dropout=0.0, max_shift=0.0)
    image = torch.full((1, 3, RESOLUTION, RESOLUTION), 0.8)
    assert (enc.encode_training(image) == -1).all()
    image[:, :, 8:24, 8:24] = -0.5  # a dark square: its outline lies on its own border pixels
    expected = np.zeros((RESOLUTION, RESOLUTION), bool)
    expected[8:24, 8:24] = True
    expected[9:23, 9:23] = False
    assert (lines_of(enc.encode_training(image)) == expected).all()


def test_sketch_training_augments_with_gaps_and_shifts(nouns):
    clean = encoder("sketch", stroke_dropout=0.0, max_shift=0.0).encode_training(nouns)
    gappy = encoder("sketch", stroke_dropout=0.5, max_shift=0.0).encode_training(nouns)
    assert ((gappy > 0) <= (clean > 0)).all() and (gappy > 0).sum() < 0.8 * (clean > 0).sum()
    shifted = encoder("sketch", stroke_dropout=0.0, max_shift=3.0).encode_training(nouns)
    assert (shifted > 0).sum() <= (clean > 0).sum()
    assert not torch.equal(shifted, clean)


def test_sketch_interior_dropout_keeps_the_figures_outline_and_leaves_out_inner_lines(nouns):
    from condiff.conditions.sketch import foreground

    complete = encoder("sketch", stroke_dropout=0.0, max_shift=0.0).encode_training(nouns) > 0
    torch.manual_seed(0)
    sparse = encoder("sketch", stroke_dropout=0.0, max_shift=0.0, interior_dropout=1.0).encode_training(nouns) > 0
    assert (sparse <= complete).all()  # nothing is drawn that the image does not have
    figure = foreground(nouns, 0.05)[:, None]
    near_background = torch.nn.functional.max_pool2d((~figure).float(), 3, stride=1, padding=1) > 0
    outline = complete & near_background
    assert outline.sum() > 0 and (sparse[outline]).all()  # the outline against the background stays
    inner = complete & ~outline
    assert sparse[inner].float().mean() < 0.9  # inner lines are left out
    torch.manual_seed(0)
    none_left_out = encoder("sketch", stroke_dropout=0.0, max_shift=0.0, interior_dropout=0.0).encode_training(nouns)
    assert torch.equal(none_left_out > 0, complete)


def test_fill_shapes_fills_closed_outlines_and_figures_the_frame_cuts():
    from condiff.conditions.sketch import fill_shapes

    lines = np.zeros((32, 32), bool)
    lines[4, 4:12] = lines[11, 4:12] = lines[4:12, 4] = lines[4:12, 11] = True  # a closed square
    lines[20:32, 8] = lines[20:32, 24] = lines[20, 8:25] = True  # a body standing on the bottom edge
    filled = fill_shapes(lines, gap=0)
    assert filled[4:12, 4:12].all() and filled[20:32, 8:25].all()
    assert filled.sum() == 8 * 8 + 12 * 17  # the background, which reaches two sides or more, stays out
    gappy = lines.copy()
    gappy[4, 6:8] = False  # a 2 px gap in the square's top
    assert not fill_shapes(gappy, gap=0)[6:10, 6:10].any()  # it leaks without closing
    closed = filled.copy()
    closed[4, 6:8] = False  # the gap's own pixels are on the edge, not inside
    assert (fill_shapes(gappy, gap=2) == closed).all()  # closed, and the margin given back


def test_fill_by_corners_keeps_a_figure_the_frame_cuts_on_several_sides():
    from condiff.conditions.sketch import fill_shapes

    lines = np.zeros((32, 32), bool)
    lines[:, 4] = lines[:, 27] = True  # a figure the frame cuts at the top and the bottom (a face drawn edge to edge)
    sides = fill_shapes(lines, gap=0)
    corners = fill_shapes(lines, gap=0, background="corners")
    assert not sides[:, 5:27].any()  # it reaches two sides: "sides" takes it for background
    assert corners[:, 4:28].all()  # only what reaches a corner is background
    assert not corners[:, :4].any() and not corners[:, 28:].any()


def test_a_wider_fill_gap_closes_a_sketch_drawn_with_gaps():
    image = Image.new("L", (256, 256), 255)
    draw = ImageDraw.Draw(image)
    for side in ((64, 64, 192, 64), (64, 192, 192, 192), (64, 64, 64, 192), (192, 64, 192, 192)):
        x0, y0, x1, y1 = side  # a square whose every side has an 18 px gap in its middle (2.25 px at 32)
        mx, my = (x0 + x1) // 2, (y0 + y1) // 2
        half = (9 if x0 != x1 else 0, 9 if y0 != y1 else 0)
        draw.line((x0, y0, mx - half[0], my - half[1]), fill=0, width=3)
        draw.line((mx + half[0], my + half[1], x1, y1), fill=0, width=3)
    inside = slice(10, 22)
    default = encoder("sketch", fill=True).encode_input(image, RESOLUTION)
    wider = encoder("sketch", fill=True, fill_gap=3.0).encode_input(image, RESOLUTION)
    assert not (default[0, 1, inside, inside] > 0).any()  # it leaks at 2 px
    assert (wider[0, 1, inside, inside] > 0).all()


def test_sketch_fill_settings_are_checked():
    with pytest.raises(ValueError, match="fill_background must be one of sides, corners, got 'edges'"):
        encoder("sketch", fill=True, fill_background="edges")
    with pytest.raises(ValueError, match="fill_gap must be from 0 to 32"):
        encoder("sketch", fill=True, fill_gap=40)


def test_sketch_fill_adds_the_filled_silhouette_as_a_second_channel(nouns):
    enc = encoder("sketch", stroke_dropout=0.0, max_shift=0.0, fill=True)
    image = torch.full((1, 3, RESOLUTION, RESOLUTION), 0.8)
    image[:, :, 8:24, 8:24] = -0.5  # a dark square: its outline lies on its own border pixels
    channels = enc.encode_training(image)
    assert channels.shape == (1, 2, RESOLUTION, RESOLUTION)
    square = np.zeros((RESOLUTION, RESOLUTION), bool)
    square[8:24, 8:24] = True
    assert (lines_of(channels[:, 1:]) == square).all()
    plain = encoder("sketch", stroke_dropout=0.0, max_shift=0.0)
    assert torch.equal(channels[:, :1], plain.encode_training(image))  # the lines are unchanged
    both = enc.encode_training(nouns)
    assert ((both[:, :1] > 0) <= (both[:, 1:] > 0)).all()  # every line lies in the filled shapes


@pytest.mark.parametrize("width", [2, 24])
def test_sketch_input_fill_is_the_drawn_shape_whatever_the_pens_width(width):
    image = Image.new("L", (256, 256), 255)
    ImageDraw.Draw(image).ellipse([64, 64, 192, 192], outline=0, width=width)  # centre line r = 64 - w / 2
    channels = encoder("sketch", fill=True).encode_input(image, RESOLUTION)
    radius = (64 - width / 2) / 8  # in 32 px pixels
    filled = lines_of(channels[:, 1:])
    assert abs(filled.sum() - np.pi * radius**2) < 0.1 * np.pi * radius**2
    assert filled[16, 16] and not filled[2, 2]


@pytest.mark.parametrize("name", ["sketch", "grayscale"])
def test_consistency_is_zero_for_the_true_image_and_grows_when_the_prediction_disobeys(name, nouns):
    enc = encoder(name, stroke_dropout=0.0, max_shift=0.0) if name == "sketch" else encoder(name)
    channels = enc.encode_training(nouns)
    assert torch.equal(enc.consistency(nouns, channels), torch.zeros(len(nouns)))
    torch.manual_seed(0)
    flat = nouns.mean(dim=(2, 3), keepdim=True) + 0.01 * torch.randn_like(nouns)
    flat.requires_grad_()
    losses = enc.consistency(flat, channels)  # a nearly flat image has neither the lines nor the luma
    assert (losses > 0.01).all()
    losses.sum().backward()
    assert flat.grad.abs().sum() > 0  # the trainer can learn from it


def test_the_figure_term_takes_the_background_from_outside_the_drawn_shapes_not_from_the_border():
    # A red disk cut by the frame on every side, on white (an emoji drawn edge to edge): its border is mostly red.
    settings = {"stroke_dropout": 0.0, "max_shift": 0.0, "fill": True, "fill_background": "corners"}
    edges_only, both = encoder("sketch", **settings), encoder("sketch", **settings, figure_consistency=1.0)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disk = (y - 15.5) ** 2 + (x - 15.5) ** 2 < 19**2
    red = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    image = torch.where(disk, red, torch.ones(3, 32, 32))[None]
    channels = both.encode_training(image)
    assert torch.equal(channels[0, 1] > 0, disk)
    assert torch.allclose(both.consistency(image, channels), edges_only.consistency(image, channels))
    hollow = torch.where(disk & ~(channels[0, :1] > 0), torch.ones(3, 32, 32), image)  # the outline only
    assert (both.consistency(hollow, channels) - edges_only.consistency(hollow, channels)).item() > 0.5


def test_the_figure_term_asks_for_the_drawn_shapes_unlike_the_background_inside_and_like_it_outside(nouns):
    settings = {"stroke_dropout": 0.0, "max_shift": 0.0, "fill": True}
    edges_only, both = encoder("sketch", **settings), encoder("sketch", **settings, figure_consistency=1.0)
    channels = both.encode_training(nouns)
    shapes = channels[:, 1:] > 0
    background = nouns[:, :, :1, :1].expand_as(nouns)
    painted = torch.where(shapes, -1.0, background)  # a black figure exactly where the shapes are
    assert torch.allclose(both.consistency(painted, channels), edges_only.consistency(painted, channels))
    inside = shapes & (channels[:, :1] <= 0)  # the same lines, but the shapes' insides nearly background:
    torch.manual_seed(0)
    nearly = background + 0.01 * torch.randn_like(background)
    hollow = torch.where(inside, nearly, painted).requires_grad_()
    extra = both.consistency(hollow, channels) - edges_only.consistency(hollow, channels)
    share_inside = inside.float().mean(dim=(1, 2, 3))
    assert (extra > 0.9 * share_inside).all() and (extra <= share_inside).all()  # each inner pixel nearly misses
    extra.sum().backward()
    assert hollow.grad.abs().sum() > 0
    nothing = channels.clone()
    nothing[0] = 0  # a drawing that encloses nothing asks for no figure
    assert both.consistency(hollow, nothing)[0] == edges_only.consistency(hollow, nothing)[0]
    with pytest.raises(ValueError, match="figure_consistency must be from 0 to"):
        encoder("sketch", fill=True, figure_consistency=-1.0)
    with pytest.raises(ValueError, match="figure_consistency needs fill: true"):
        encoder("sketch", figure_consistency=1.0)


def test_the_agreed_figure_term_asks_only_what_the_truth_itself_has(nouns):
    # Nouns have background-coloured pixels inside their drawn shapes (eyes, stripes): the truth misses the
    # drawn figure term there, and meets the agreed one exactly.
    settings = {"stroke_dropout": 0.0, "max_shift": 0.0, "fill": True, "figure_consistency": 1.0}
    edges_only = encoder("sketch", stroke_dropout=0.0, max_shift=0.0, fill=True)
    drawn, agreed = encoder("sketch", **settings), encoder("sketch", **settings, figure_where="agreed")
    channels = drawn.encode_training(nouns)
    edge_term = edges_only.consistency(nouns, channels)
    assert (drawn.consistency(nouns, channels, truth=nouns) > edge_term).any()
    assert torch.equal(agreed.consistency(nouns, channels, truth=nouns), edge_term)
    # A figure painted as background where drawing and truth agree it is figure still costs.
    shapes = channels[:, 1:] > 0
    background = nouns[:, :, :1, :1].expand_as(nouns)
    hollow = torch.where(shapes & (channels[:, :1] <= 0), background, nouns)
    assert (agreed.consistency(hollow, channels, truth=nouns) - edges_only.consistency(hollow, channels) > 0.05).all()
    assert torch.equal(agreed.consistency(hollow, channels), drawn.consistency(hollow, channels))  # no truth: drawn
    with pytest.raises(ValueError, match="figure_where must be one of drawn, agreed"):
        encoder("sketch", fill=True, figure_where="truth")


def test_the_agreed_edge_term_asks_for_no_more_edge_than_the_truth_has_under_a_line(nouns):
    # Training drawings are shifted and widened off the true edges: the truth misses the drawn edge term.
    drawn = encoder("sketch", thickness_jitter=1.0)
    agreed = encoder("sketch", thickness_jitter=1.0, edge_where="agreed")
    torch.manual_seed(0)
    channels = drawn.encode_training(nouns)
    assert (drawn.consistency(nouns, channels, truth=nouns) > 0.02).all()
    assert torch.equal(agreed.consistency(nouns, channels, truth=nouns), torch.zeros(len(nouns)))
    flat = nouns.mean(dim=(2, 3), keepdim=True).expand_as(nouns)  # no edges at all
    assert (agreed.consistency(flat, channels, truth=nouns) > 0.3).all()
    with pytest.raises(ValueError, match="edge_where must be one of drawn, agreed"):
        encoder("sketch", edge_where="truth")


def test_a_stack_sums_its_encoders_consistency_and_skips_dropped_conditions(nouns):
    from condiff.conditions.stack import ConditionStack

    stack = ConditionStack(conditions=[{"name": "sketch", "stroke_dropout": 0.0, "max_shift": 0.0},
                                       {"name": "canny"}, {"name": "grayscale"}])
    assert stack.offers_consistency and not ConditionStack(conditions=[{"name": "canny"}]).offers_consistency
    channels = stack.encode_training(nouns, apply_dropout=False)
    flat = nouns.mean(dim=(2, 3), keepdim=True).expand_as(nouns)
    sketch, gray = stack.encoders[0], stack.encoders[2]
    expected = sketch.consistency(flat, channels[:, :1]) + gray.consistency(flat, channels[:, 2:])
    assert torch.allclose(stack.consistency(flat, channels), expected)
    assert torch.equal(stack.consistency(nouns, channels), torch.zeros(len(nouns)))
    channels[0] = 0  # the first sample's conditions were all dropped: nothing to obey
    assert stack.consistency(flat, channels)[0] == 0 and stack.consistency(flat, channels)[1] > 0


def test_a_stack_hands_the_truth_to_losses_that_take_it_and_not_to_older_two_argument_ones(nouns, monkeypatch):
    from condiff.conditions.registry import _REGISTRY
    from condiff.conditions.stack import ConditionStack

    class OldStyle(ConditionEncoder):  # a plugin written before consistency took the truth
        channels = 1

        def encode_training(self, images):
            return images[:, :1]

        def consistency(self, predicted, channels):
            return (predicted[:, :1] - channels).pow(2).mean(dim=(1, 2, 3))

    monkeypatch.setitem(_REGISTRY, "old-style-test", OldStyle)
    stack = ConditionStack(conditions=[{"name": "old-style-test"}, {"name": "sketch", "stroke_dropout": 0.0,
                                        "max_shift": 0.0, "fill": True, "figure_consistency": 1.0,
                                        "figure_where": "agreed"}])
    channels = stack.encode_training(nouns, apply_dropout=False)
    assert torch.equal(stack.consistency(nouns, channels, truth=nouns), torch.zeros(len(nouns)))
    assert (stack.consistency(nouns, channels) > 0).any()  # without the truth the figure term asks the drawn shapes


def test_encoders_without_a_consistency_loss_offer_none(nouns):
    enc = encoder("canny")
    assert enc.consistency(nouns, enc.encode_training(nouns)) is None


def drawing(size: int = 512, width: int = 3) -> Image.Image:
    """A black-on-white line drawing: a face in a frame."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle([60, 60, 450, 450], outline=0, width=width)
    draw.ellipse([150, 120, 360, 380], outline=0, width=width)
    draw.line([200, 300, 310, 300], fill=0, width=width)
    return image


def test_sketch_input_is_the_same_in_either_polarity():
    enc = encoder("sketch")
    black_on_white = enc.encode_input(drawing(), RESOLUTION)
    white_on_black = enc.encode_input(ImageOps.invert(drawing()), RESOLUTION)
    assert (black_on_white != white_on_black).float().mean() < 0.01
    assert 60 < (black_on_white > 0).sum() < 300  # lines, not a filled or empty picture


def test_sketch_input_on_a_transparent_background_matches_paper():
    enc = encoder("sketch")
    on_paper = enc.encode_input(drawing(), RESOLUTION)
    ink = np.asarray(ImageOps.invert(drawing()))  # ink where the drawing is dark
    dark_strokes = Image.fromarray(np.stack([np.zeros_like(ink)] * 3 + [ink], axis=-1), "RGBA")
    light_strokes = Image.fromarray(np.stack([np.full_like(ink, 255)] * 3 + [ink], axis=-1), "RGBA")
    assert torch.equal(enc.encode_input(dark_strokes, RESOLUTION), on_paper)
    assert torch.equal(enc.encode_input(light_strokes, RESOLUTION), on_paper)


def test_sketch_input_keeps_a_thin_line_and_thins_a_thick_one():
    enc = encoder("sketch")
    image = Image.new("L", (512, 512), 255)
    draw = ImageDraw.Draw(image)
    draw.line([40, 100, 470, 100], fill=0, width=1)  # 1 px: 1/16 of a 32 px pixel
    draw.line([40, 300, 470, 300], fill=0, width=40)  # 40 px: 2.5 pixels at 32 px
    lines = lines_of(enc.encode_input(image, RESOLUTION))
    assert lines[6].sum() >= 20  # the thin line survived the downsampling
    assert lines[16:22].sum(axis=0).max() == 1  # the thick one is one pixel wide
    assert lines.sum() < 60


def test_sketch_input_of_a_blank_page_has_no_lines():
    assert (encoder("sketch").encode_input(Image.new("RGB", (200, 300), "white"), RESOLUTION) == -1).all()


# ---------------------------------------------------------------------------------------------------
# lowres
# ---------------------------------------------------------------------------------------------------


def test_lowres_is_the_area_average_in_blocks(nouns):
    channels = encoder("lowres", factor=4).encode_training(nouns)
    averages = nouns.unflatten(2, (8, 4)).unflatten(4, (8, 4)).mean(dim=(3, 5))
    assert torch.allclose(channels, averages.repeat_interleave(4, 2).repeat_interleave(4, 3), atol=1e-6)


def test_lowres_input_at_the_low_size_is_blown_up_unchanged():
    small = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    channels = encoder("lowres", factor=4).encode_input(small, RESOLUTION)
    pixels = to_model_tensor(np.asarray(small)[None])
    assert torch.equal(channels, pixels.repeat_interleave(4, 2).repeat_interleave(4, 3))


# ---------------------------------------------------------------------------------------------------
# inpaint
# ---------------------------------------------------------------------------------------------------


def test_inpaint_training_holes_are_blank_rectangles_of_the_configured_size(nouns):
    torch.manual_seed(3)
    channels = encoder("inpaint", min_size=0.25, max_size=0.5).encode_training(nouns)
    for mask, masked, image in zip(channels[:, 0] > 0, channels[:, 1:], nouns, strict=True):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert mask.sum() == height * width  # one filled rectangle
        assert rows[-1] - rows[0] + 1 == height and cols[-1] - cols[0] + 1 == width
        assert 8 <= height <= 16 and 8 <= width <= 16
        assert (masked[:, mask] == 0).all() and torch.equal(masked[:, ~mask], image[:, ~mask])


def test_inpaint_input_hole_is_the_transparent_part():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    ImageDraw.Draw(image).rectangle([16, 32, 47, 63], fill=(0, 255, 0, 0))
    channels = encoder("inpaint").encode_input(image, RESOLUTION)
    hole = np.zeros((RESOLUTION, RESOLUTION), bool)
    hole[16:32, 8:24] = True
    assert ((channels[0, 0] > 0).numpy() == hole).all()
    assert (channels[0, 1:, torch.from_numpy(hole)] == 0).all()
    assert (channels[0, 1:, ~torch.from_numpy(hole)] == torch.tensor([[1.0], [-1.0], [-1.0]])).all()


def test_inpaint_input_without_transparency_has_no_hole():
    channels = encoder("inpaint").encode_input(Image.new("RGB", (40, 40), "blue"), RESOLUTION)
    assert (channels[0, 0] == -1).all()


# ---------------------------------------------------------------------------------------------------
# A saved stack records every encoder's resolved settings
# ---------------------------------------------------------------------------------------------------

# Settings newer than a shipped model, at their defaults.
ADDED_LATER = {"grayscale": {"level_features": 0},
               "sketch": {"fill_gap": 2, "fill_background": "sides", "figure_consistency": 0.0,
                          "figure_where": "drawn", "edge_where": "drawn"}}
SHIPPED_CONDITIONS = {
    "colorize": [{"name": "grayscale", "dropout": 0.1, "package": "condiff", "resize": "bicubic", "level_features": 7}],
    "sketch2img": [{"name": "sketch", "dropout": 0.1, "package": "condiff", "thickness_jitter": 0.0,
                    "stroke_dropout": 0.1, "max_shift": 1.0, "threshold": 0.05, "interior_dropout": 1.0, "fill": True}],
}


def test_a_saved_stack_keeps_its_settings_when_a_default_changes(tmp_path, monkeypatch):
    from diffusers.configuration_utils import register_to_config

    from condiff.conditions.registry import _REGISTRY
    from condiff.conditions.sketch import SketchCondition
    from condiff.conditions.stack import ConditionStack

    ConditionStack(conditions=[{"name": "sketch"}]).save_pretrained(tmp_path)
    before = ConditionStack(conditions=[{"name": "sketch"}]).encode_inputs([drawing()], RESOLUTION)

    class ThickerByDefault(SketchCondition):  # a later condiff in which thickness_jitter defaults to 2
        @register_to_config
        def __init__(self, thickness_jitter: float = 2.0, stroke_dropout: float = 0.1, max_shift: float = 1.0,
                     threshold: float = 0.05, interior_dropout: float = 0.0, fill: bool = False,
                     fill_gap: float = 2.0, fill_background: str = "sides", figure_consistency: float = 0.0,
                     figure_where: str = "drawn", edge_where: str = "drawn") -> None:
            super().__init__(thickness_jitter=thickness_jitter, stroke_dropout=stroke_dropout,
                             max_shift=max_shift, threshold=threshold, interior_dropout=interior_dropout,
                             fill=fill, fill_gap=fill_gap, fill_background=fill_background,
                             figure_consistency=figure_consistency, figure_where=figure_where,
                             edge_where=edge_where)

    monkeypatch.setitem(_REGISTRY, "sketch", ThickerByDefault)
    saved = ConditionStack.from_pretrained(tmp_path)
    fresh = ConditionStack(conditions=[{"name": "sketch"}])
    assert torch.equal(saved.encode_inputs([drawing()], RESOLUTION), before)
    assert not torch.equal(fresh.encode_inputs([drawing()], RESOLUTION), before)
    assert isinstance(saved.encoders[0], ThickerByDefault) and saved.encoders[0].config.thickness_jitter == 0.0


def test_a_stack_records_every_setting_and_rebuilds_from_its_config(tmp_path):
    import json

    from condiff.conditions.stack import ConditionStack

    given = [{"name": "canny", "low_threshold": 50}, {"name": "lowres", "dropout": 0.2}]
    stack = ConditionStack(conditions=given)
    resolved = [{"name": "canny", "dropout": 0.0, "package": "condiff", "low_threshold": 50, "high_threshold": 200,
                 "resize": "bicubic"},
                {"name": "lowres", "dropout": 0.2, "package": "condiff", "factor": 4}]
    assert stack.config.conditions == resolved
    stack.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["conditions"] == resolved
    assert ConditionStack.from_config(stack.config).config.conditions == resolved


def test_a_folder_saved_with_only_names_and_dropouts_still_loads(tmp_path):
    import json

    from condiff.conditions.stack import ConditionStack

    ConditionStack(conditions=[{"name": "sketch", "dropout": 0.1}]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["conditions"] = [{"name": "sketch", "dropout": 0.1}]  # as folders were written before
    (tmp_path / "config.json").write_text(json.dumps(config))
    stack = ConditionStack.from_pretrained(tmp_path)
    defaults = {"thickness_jitter": 0.0, "stroke_dropout": 0.1, "max_shift": 1.0, "threshold": 0.05,
                "interior_dropout": 0.0, "fill": False, "fill_gap": 2, "fill_background": "sides",
                "figure_consistency": 0.0, "figure_where": "drawn", "edge_where": "drawn"}
    assert stack.config.conditions == [{"name": "sketch", "dropout": 0.1, "package": "condiff", **defaults}]
    assert stack.dropouts == [0.1]


def test_every_shipped_condition_stack_is_checked_below():
    from pathlib import Path

    import condiff

    folders = (Path(condiff.__file__).parent / "models").glob("*/conditions")
    assert {folder.parent.name for folder in folders} == set(SHIPPED_CONDITIONS)


@pytest.mark.parametrize("model", SHIPPED_CONDITIONS)
def test_shipped_models_record_the_settings_they_were_trained_with(model):
    import json
    from pathlib import Path

    import condiff
    from condiff.conditions.stack import ConditionStack

    folder = Path(condiff.__file__).parent / "models" / model / "conditions"
    assert json.loads((folder / "config.json").read_text())["conditions"] == SHIPPED_CONDITIONS[model]
    # a setting added after the model shipped loads at its default, which keeps the encoder as trained
    loaded = [{**spec, **{k: v for k, v in ADDED_LATER.get(spec["name"], {}).items() if k not in spec}}
              for spec in SHIPPED_CONDITIONS[model]]
    stack = ConditionStack.from_pretrained(folder)
    assert stack.config.conditions == loaded
    assert [e.to_dict() for e in stack.encoders] == [
        {k: v for k, v in spec.items() if k not in ("dropout", "package")} for spec in loaded]
    assert stack.dropouts == [spec["dropout"] for spec in SHIPPED_CONDITIONS[model]]


def test_an_encoder_setting_may_not_be_named_like_a_stack_key():
    from diffusers.configuration_utils import register_to_config

    from condiff.conditions import register_condition

    class Noisy(ConditionEncoder):
        @register_to_config
        def __init__(self, dropout: float = 0.5) -> None:
            pass

    with pytest.raises(ValueError, match="rename the setting.*dropout"):
        register_condition("noisy-test")(Noisy)
    assert "noisy-test" not in list_conditions()


def test_an_encoder_without_settings_needs_no_register_to_config():
    from condiff.conditions.base import ConditionEncoder

    class Plain(ConditionEncoder):  # no __init__: nothing to record
        name = "plain-test"
        channels = 1

        def encode_training(self, images):
            return images[:, :1]

    encoder = Plain()
    assert encoder.settings == {} and encoder.to_dict() == {"name": "plain-test"}
