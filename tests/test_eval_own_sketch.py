"""`condiff eval sketch2img --data FOLDER`: drawings of a user's own images in three styles, read as a user's
file is, and the scores beside the truth and chance."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from condiff.cli.main import main
from condiff.conditions.sketch import SketchCondition, foreground
from condiff.evaluation.own_drawings import STYLES, UNSEEN_STYLES, own_drawings
from condiff.images import to_model_tensor
from condiff.steering.silhouette import FIGURE_CONTRAST
from tests.conftest import save_untrained_models

SIZE = 32
COUNT = 12


def shape_pictures() -> list[Image.Image]:
    """COUNT RGBA pictures of SIZE px: on a transparent background, a coloured ellipse or rectangle with a
    smaller shape of a strongly different colour inside it, each at its own place and size."""
    rng = np.random.default_rng(0)
    pictures = []
    for i in range(COUNT):
        picture = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
        draw = ImageDraw.Draw(picture)
        left, top = rng.integers(2, 10, 2)
        right, bottom = rng.integers(20, 30, 2)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3)) + (255,)
        (draw.ellipse if i % 2 else draw.rectangle)([left, top, right, bottom], fill=colour)
        inner = [left + (right - left) // 3, top + (bottom - top) // 3, right - (right - left) // 3,
                 bottom - (bottom - top) // 3]
        draw.rectangle(inner, fill=tuple(255 - c for c in colour[:3]) + (255,))
        pictures.append(picture)
    return pictures


def as_truth(pictures: list[Image.Image]) -> torch.Tensor:
    """The pictures as training reads them: composited on white, in [-1, 1]."""
    white = [Image.alpha_composite(Image.new("RGBA", p.size, (255, 255, 255, 255)), p).convert("RGB")
             for p in pictures]
    return to_model_tensor(np.stack([np.asarray(p) for p in white]))


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    for i, picture in enumerate(shape_pictures()):
        picture.save(folder / f"shape{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def sketch_models(tmp_path_factory):
    """Untrained tiny sketch2img models: plain, and with the filled-shapes channel (silhouette steering)."""
    return save_untrained_models(tmp_path_factory.mktemp("models"), {
        "plain": [{"name": "sketch", "dropout": 0.1}],
        "fill": [{"name": "sketch", "dropout": 0.1, "fill": True}]})


def near(mask: torch.Tensor, distance: int) -> torch.Tensor:
    """Pixels within `distance` (chessboard) of the (H, W) bool mask."""
    size = 2 * distance + 1
    return torch.nn.functional.max_pool2d(mask.float()[None, None], size, 1, distance)[0, 0] > 0


def test_the_three_styles_are_different_strokes_on_paper_and_read_as_lines():
    truth = as_truth(shape_pictures())
    encoder = SketchCondition()
    drawn = {style: own_drawings(style, truth, seed=0) for style in STYLES}
    lines = {}
    for style, pictures in drawn.items():
        for picture in pictures:
            pixels = np.asarray(picture)
            assert picture.mode == "L" and pixels.shape == (8 * SIZE, 8 * SIZE)
            assert set(np.unique(pixels)) == {0, 255} and 0.005 < (pixels == 0).mean() < 0.5, style
        # Read as a user's file is, every drawing gives lines.
        lines[style] = torch.cat([encoder.encode_input(picture, SIZE) > 0 for picture in pictures])
        assert all(image.any() for image in lines[style]), style
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
                               zip(drawn[a], drawn[b], strict=True)), (a, b)
    assert set(UNSEEN_STYLES) == {"wobbly", "sparse"}
    ink = {style: np.mean([(np.asarray(p) == 0).mean() for p in pictures]) for style, pictures in drawn.items()}
    assert ink["wobbly"] > 1.5 * ink["outlines"]  # a thick pen
    assert lines["sparse"].sum() < 0.9 * lines["outlines"].sum()  # a few strokes, as the model reads them
    # Deterministic for a seed; the unsteady hand and the gaps change with it.
    for style in STYLES:
        again = own_drawings(style, truth, seed=0)
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(drawn[style], again, strict=True))
    for style in UNSEEN_STYLES:
        other = own_drawings(style, truth, seed=1)
        assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(drawn[style], other, strict=True))


def test_every_style_follows_the_figure_outline_and_wobbly_keeps_the_strong_inner_edge():
    truth = as_truth(shape_pictures())
    figures = foreground(truth, FIGURE_CONTRAST)
    encoder = SketchCondition()
    least = {"outlines": 0.95, "wobbly": 0.8, "sparse": 0.5}  # sparse leaves gaps
    for style in STYLES:
        for image, figure, drawing in zip(truth, figures, own_drawings(style, truth), strict=True):
            lines = encoder.encode_input(drawing, SIZE)[0, 0] > 0
            edge = figure & near(~figure, 1)
            assert near(lines, 2)[edge].float().mean() > least[style], style
            if style == "wobbly":  # the inner square's outline, strong, is drawn too
                outer = image[:, figure].median(dim=1).values  # the shape's colour: it covers most of the figure
                inner = figure & ((image - outer[:, None, None]).abs().amax(dim=0) > 0.5)
                inner_edge = inner & near(~inner, 1)
                assert inner_edge.sum() >= 8
                assert near(lines, 2)[inner_edge].float().mean() > 0.8


@pytest.mark.parametrize("model,steering", [("plain", []), ("fill", []),
                                            ("fill", ["--silhouette", "off", "--palette", "off"])])
def test_eval_on_own_images_prints_each_style_beside_truth_and_chance(sketch_models, shapes_folder, tmp_path, capsys,
                                                                     model, steering):
    out = tmp_path / "report.json"
    code = main(["eval", "sketch2img", "--model", str(sketch_models[model]), "--data", str(shapes_folder),
                 "--num", "10", "--steps", "1", "--json", str(out), *steering])
    printed = capsys.readouterr().out
    assert code == 0
    styles = ["outlines", "wobbly", "sparse"]
    # A fill model's rows include what its fill channel alone would score: the reference for the network.
    rows = [name for style in styles for name in (f"model, {style}", *([f"filled shapes, {style}"]
                                                                     if model == "fill" else []))]
    rows += ["truth", "chance", "mean image"]
    assert all(row in printed for row in rows) and "silhouette IoU" in printed and "edge F1" in printed
    (report,) = json.loads(out.read_text())
    assert [row["name"] for row in report["rows"]] == rows
    assert report["settings"]["images"] == 10
    assert report["settings"]["silhouette"] == ("off" if steering else "auto")
    assert report["settings"]["palette"] == ("off" if steering else "auto")
    assert str(shapes_folder) in " ".join(report["notes"])
    scores = {row["name"]: row for row in report["rows"]}
    assert scores["truth"]["silhouette IoU"] == 1.0 and scores["truth"]["edge F1"] == 1.0
    assert scores["chance"]["silhouette IoU"] < 0.9 and scores["chance"]["edge F1"] < 0.9
    for style in styles:
        name = f"model, {style}"
        assert 0.0 <= scores[name]["silhouette IoU"] <= 1.0 and 0.0 <= scores[name]["edge F1"] <= 1.0
        if model == "fill":
            shapes = scores[f"filled shapes, {style}"]
            assert 0.3 < shapes["silhouette IoU"] <= 1.0 and shapes["edge F1"] is None


def test_where_the_frame_cuts_the_figure_no_style_draws_the_frame():
    picture = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(picture).rectangle([8, 12, 23, SIZE - 1], fill=(200, 40, 40, 255))  # stands on the bottom edge
    truth = as_truth([picture])
    for style in STYLES:
        (drawing,) = own_drawings(style, truth)
        ink = np.asarray(drawing) == 0
        assert ink[-1].mean() < 0.1 and ink[:, :8 * 10].any(), style  # the sides end there (a frame line: 0.5)
