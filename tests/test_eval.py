"""Quality metrics on known cases, and `condiff eval` end to end on tiny untrained models."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from condiff.cli.main import main
from condiff.evaluation import metrics
from condiff.evaluation.evaluators import gray_file_images
from condiff.evaluation.features import NounsFeatureNet, extract
from condiff.evaluation.held_out import held_out_nouns
from condiff.evaluation.report import Report, Row
from tests.conftest import save_untrained_models


def gaussian(n=400, dim=8, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = gaussian()
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near = metrics.frechet_distance(a, gaussian(shift=0.5, seed=1))
    far = metrics.frechet_distance(a, gaussian(shift=2.0, seed=1))
    assert 1.0 < near < far
    # The mean term alone: shifting every dimension by 2 adds 8 * 2^2 = 32 to the distance.
    assert metrics.frechet_distance(a, a + 2.0) == pytest.approx(32.0, rel=1e-6)


def test_frechet_distance_of_a_scaled_set_matches_the_closed_form():
    a = gaussian(n=20000, dim=2, seed=3)
    # N(0, I) against N(0, 4I) in 2 dimensions: tr(I) + tr(4I) - 2 tr(2I) = 2.
    assert metrics.frechet_distance(a, 2 * gaussian(n=20000, dim=2, seed=4)) == pytest.approx(2.0, rel=0.05)


def test_kid_is_near_zero_for_samples_of_one_distribution_and_positive_for_shifted_ones():
    same, _ = metrics.kernel_inception_distance(gaussian(seed=0), gaussian(seed=1))
    shifted, _ = metrics.kernel_inception_distance(gaussian(seed=0), gaussian(shift=1.0, seed=1))
    assert abs(same) < 0.05 < shifted


def test_psnr_of_identical_images_is_capped_and_falls_with_error():
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    assert metrics.psnr(images, images) == metrics.PSNR_CAP
    # An error of 0.1 of the range everywhere: 10 log10(1 / 0.01) = 20 dB.
    assert metrics.psnr((images + 0.2).clamp(-1, 1), images) < metrics.psnr(images, images)
    flat = torch.zeros(2, 3, 8, 8)
    assert metrics.psnr(flat + 0.2, flat) == pytest.approx(20.0, abs=1e-6)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    images = held_out_nouns(4, seed=7)
    assert metrics.ssim(images, images) == pytest.approx(1.0)
    noisy = (images + 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert metrics.ssim(noisy, images) < 0.9


def test_luma_error_and_colourfulness():
    images = held_out_nouns(8, seed=3)
    gray = gray_file_images(images)  # each Noun as a gray file holds it, read as RGB
    assert metrics.luma_error(images, images) == 0.0
    assert metrics.luma_error(gray, images) == 0.0  # the file's levels are the colours' own
    assert metrics.luma_error(torch.zeros_like(images), images) > 10  # mid-gray is far from a Noun
    assert metrics.colourfulness(gray) == pytest.approx(0.0, abs=1e-9)
    assert metrics.colourfulness(images) > 20


def levels_to_model_range(levels: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) 8-bit levels -> (N, 3, H, W) in [-1, 1]."""
    return torch.tensor(levels, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1


def test_flat_area_noise_counts_grain_in_flat_areas_and_not_edges():
    background = np.full((1, 8, 8, 3), 200.0)
    assert metrics.flat_area_noise(levels_to_model_range(background)) == 0.0
    halves = background.copy()
    halves[:, :, 4:] = 20  # a hard edge: the pixels beside it are not in a flat area
    assert metrics.flat_area_noise(levels_to_model_range(halves)) == 0.0
    speck = background.copy()
    speck[0, 3, 3] = 240  # 40 levels off; its 8 neighbours see it and leave the flat areas
    assert metrics.flat_area_noise(levels_to_model_range(speck)) == pytest.approx(40 / (64 - 8), abs=0.02)
    rng = np.random.default_rng(0)
    grain = background + rng.integers(-2, 3, size=(1, 8, 8, 1))  # +-2 levels of grain, gray
    assert 0.5 < metrics.flat_area_noise(levels_to_model_range(grain)) < 2.5
    nouns = metrics.flat_area_noise(held_out_nouns(16, seed=3))
    assert nouns < 1.0  # pixel art: flat areas are flat
    noise = rng.integers(0, 256, size=(1, 8, 8, 3)).astype(float)
    assert metrics.flat_area_noise(levels_to_model_range(noise)) is None  # nothing flat: nothing to measure


def test_edge_f1_on_known_maps():
    edges = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    edges[..., 2, 1:7] = True
    assert metrics.edge_f1(edges, edges, tolerance=0) == 1.0
    moved = edges.roll(1, dims=2)
    assert metrics.edge_f1(moved, edges, tolerance=0) == 0.0
    assert metrics.edge_f1(moved, edges, tolerance=1) == 1.0
    half = edges.clone()
    half[..., 2, 4:7] = False  # half the strokes found, nothing wrong drawn: precision 1, recall 1/2
    assert metrics.edge_f1(half, edges, tolerance=0) == pytest.approx(2 / 3)
    empty = torch.zeros_like(edges)
    assert metrics.edge_f1(empty, empty) == 1.0 and metrics.edge_f1(empty, edges) == 0.0


def test_held_out_nouns_are_deterministic_and_half_mirrored():
    a, b = held_out_nouns(6, seed=11), held_out_nouns(6, seed=11)
    assert torch.equal(a, b) and a.shape == (6, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert held_out_nouns(6, seed=11, resolution=16).shape == (6, 3, 16, 16)


def test_feature_extraction_shapes_and_confidences():
    net = NounsFeatureNet(feature_dim=16, width=8).eval()
    features, labels, confidence = extract(net, held_out_nouns(5, seed=1), batch_size=2)
    assert features.shape == (5, 16) and labels.shape == (5, 5)
    assert ((confidence > 0) & (confidence <= 1)).all()


def test_shipped_feature_network_recognises_held_out_nouns():
    from condiff.data.nouns import NounsDataset
    from condiff.evaluation.features import load_feature_net

    dataset = NounsDataset(200, seed=4242)
    images = held_out_nouns(200, seed=4242)
    truth = torch.tensor(np.stack([dataset[i]["labels"] for i in range(200)]))
    _, labels, _ = extract(load_feature_net(), images)
    accuracy = (labels == truth).float().mean(0)
    assert accuracy[0] > 0.95 and accuracy[1] > 0.8 and accuracy[4] > 0.8  # background, body, glasses


def test_report_table_and_json_keep_every_row():
    report = Report("demo", [Row("model", {"FD": 12.345, "PSNR": math.inf}, "m"), Row("floor", {"FD": 0.5})],
                    {"images": 10})
    table = report.table()
    assert "demo (images 10)" in table and "12.35" in table and "inf" in table and "-" in table
    assert [row["name"] for row in report.to_dict()["rows"]] == ["model", "floor"]


# --- the command, on tiny untrained models -----------------------------------------------------


@pytest.fixture(scope="module")
def task_models(tmp_path_factory):
    """An untrained tiny model per task, in a folder named after it: a stand-in for the shipped models."""
    root = tmp_path_factory.mktemp("models")
    save_untrained_models(root, {"unconditional": [], "colorize": [{"name": "grayscale", "dropout": 0.1}],
                                 "sketch2img": [{"name": "sketch", "dropout": 0.1}]})
    return root


@pytest.mark.parametrize("task,columns", [
    ("unconditional", ["FD", "KID", "glasses ok", "flat-area noise"]),
    ("colorize", ["PSNR", "SSIM", "luma err", "colourful", "FD", "on palette", "body right", "glasses right",
                  "body exact"]),
    ("sketch2img", ["silhouette IoU", "edge F1", "FD", "on palette"]),
])
def test_eval_prints_the_model_beside_reference_rows_and_writes_json(task_models, tmp_path, capsys, task, columns):
    out = tmp_path / "report.json"
    code = main(["eval", task, "--model", str(task_models / task), "--num", "20", "--steps", "2",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert all(column in printed for column in columns)
    (report,) = json.loads(out.read_text())
    names = [row["name"] for row in report["rows"]]
    models = [row for row in report["rows"] if row["name"].startswith("model")]
    assert names[0].startswith("model") and len(names) >= len(models) + 2
    floor = report["rows"][len(models)]
    model = models[0]
    # An untrained model is far from real Nouns; the floor (real against real) is close.
    assert floor["FD"] < model["FD"]
    if task == "colorize":
        assert floor["PSNR"] == metrics.PSNR_CAP and floor["luma err"] == 0.0
        assert floor["body exact"] == floor["glasses exact"] == 1.0
        gray = next(row for row in report["rows"] if row["name"] == "gray output")
        assert gray["glasses exact"] < 0.5 and gray["on palette"] < 0.5
    if task == "sketch2img":  # one row per drawing style; the ceiling is exact, chance is not
        styles = ["outlines", "simple", "wobbly", "inverted"]
        assert [row["name"] for row in models] == [f"model, {style}" for style in styles]
        assert floor["edge F1"] == 1.0 and floor["silhouette IoU"] == 1.0
        chance = next(row for row in report["rows"] if row["name"] == "other Noun")
        assert 0.5 < chance["silhouette IoU"] < 0.95


def test_eval_refuses_a_model_of_another_task_in_one_line(task_models, capsys):
    code = main(["eval", "sketch2img", "--model", str(task_models / "colorize"), "--num", "10", "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "sketch" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["eval", "--model", "x"], "needs a task"),
    (["eval", "unconditional", "--num", "3"], "--num 3"),
    (["eval", "unconditional", "--model", "no/such/folder"], "no/such/folder"),
    (["eval", "unconditional", "--json", "report.txt"], ".json"),
])
def test_eval_user_mistakes_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_inception_is_skipped_with_a_reason_when_unavailable(monkeypatch):
    import builtins

    from condiff.evaluation.inception import InceptionUnavailable, inception_features

    real_import = builtins.__import__

    def no_fidelity(name, *args, **kwargs):
        if name.startswith("torch_fidelity"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fidelity)
    with pytest.raises(InceptionUnavailable, match="condiff\\[inception\\]"):
        inception_features(torch.zeros(1, 3, 8, 8))


def test_inception_distance_goes_to_the_sampled_row_and_the_real_row(monkeypatch):
    """A sketch2img report's first rows are one model row per style and its samples are the last style's: the
    Inception FD of the samples belongs on that row, real vs real's on the real image row (it went on the
    first two rows whatever they were)."""
    from condiff.evaluation import inception
    from condiff.evaluation.evaluators import EvalSettings
    from condiff.evaluation.report import Report, Row

    monkeypatch.setattr(inception, "inception_features", lambda images: torch.randn(12, 4))
    rows = [Row(name, {}) for name in ("model, outlines", "model, simple", "real image", "other Noun")]
    report = Report("sketch2img", rows, {}, [], samples=torch.zeros(12, 3, 32, 32), real_row="real image")
    inception.add_inception_distance(report, "m", EvalSettings(num=12))
    assert [("Inception FD" in row.metrics) for row in report.rows] == [False, True, True, False]


# --- shipped models -----------------------------------------------------------------------------


def test_commands_use_the_shipped_models_when_model_is_omitted(task_models, tmp_path, monkeypatch, capsys):
    import condiff.tasks

    monkeypatch.setattr(condiff.tasks, "MODELS_ROOT", task_models)
    drawing = tmp_path / "in.png"
    from PIL import Image

    Image.new("L", (40, 40), 255).save(drawing)
    assert main(["sample", "--num", "2", "--steps", "2", "--out", str(tmp_path / "grid.png")]) == 0
    assert main(["colorize", str(drawing), "--steps", "2", "--out", str(tmp_path / "c.png")]) == 0
    assert main(["sketch2img", str(drawing), "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert all((tmp_path / name).is_file() for name in ("grid.png", "c.png", "s.png"))
    assert set(condiff.tasks.installed_models()) == {"unconditional", "colorize", "sketch2img"}


def test_a_missing_shipped_model_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import condiff.tasks.base

    monkeypatch.setattr(condiff.tasks.base, "MODELS_ROOT", tmp_path)
    assert main(["sample", "--out", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shipped unconditional model is missing" in err and "--model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("name", ["unconditional", "colorize", "sketch2img"])
def test_shipped_models_are_small_fp16_safetensors_with_a_model_card(name):
    from condiff.tasks import TASKS

    folder = TASKS[name].resolve_model(None)
    folder = Path(folder)
    weights = list(folder.rglob("*.safetensors"))
    assert weights and not list(folder.rglob("*.bin"))
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 10 * 2**20
    from safetensors import safe_open

    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert all(f.get_slice(key).get_dtype() == "F16" for key in f.keys())
    card = (folder / "README.md").read_text()
    assert "steps" in card and "FD" in card and "wall time" in card


@pytest.mark.parametrize("scheduler,steps,ok", [("dpm", 50, False), ("dpm", 49, True), ("dpm-logsnr", 50, False),
                                                ("dpm-logsnr", 49, True), ("ddpm", 50, True), ("ddim", 51, False)])
def test_sampler_step_limits_are_one_line_errors(task_models, tmp_path, capsys, scheduler, steps, ok):
    # The tiny models have 50 training timesteps; diffusers' DPM-Solver++ cannot take all of them.
    argv = ["sample", "--model", str(task_models / "unconditional"), "--num", "1", "--scheduler", scheduler,
            "--steps", str(steps), "--out", str(tmp_path / "g.png")]
    assert main(argv) == (0 if ok else 2)
    if not ok:
        err = capsys.readouterr().err.strip()
        assert f"--steps {steps}" in err and len(err.splitlines()) == 1


def test_keep_luma_gives_the_input_lightness_and_keeps_colour_differences():
    from condiff.images import luma
    from condiff.steering.lightness import keep_luma

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    gray = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.6 - 0.3  # no clamping needed
    fixed = keep_luma(images, gray)
    assert torch.allclose(luma(fixed), gray, atol=1e-6)
    assert torch.allclose(fixed[:, 0] - fixed[:, 1], images[:, 0] - images[:, 1], atol=1e-6)


def test_colorize_output_has_the_input_lightness(task_models, tmp_path):
    from PIL import Image

    gray = Image.fromarray(np.tile(np.linspace(40, 215, 32, dtype=np.uint8), (32, 1)), "L")
    gray.save(tmp_path / "gray.png")
    out = tmp_path / "out.png"
    assert main(["colorize", str(tmp_path / "gray.png"), "--model", str(task_models / "colorize"), "--steps", "2",
                 "--out", str(out)]) == 0
    rgb = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    out_luma = rgb @ np.array([0.299, 0.587, 0.114])
    # An untrained model's colours are wild: where a channel had to be clamped, luma cannot match.
    unclamped = ((rgb > 0) & (rgb < 255)).all(axis=-1)
    assert unclamped.mean() > 0.3
    assert np.abs(out_luma - np.asarray(gray, dtype=float))[unclamped].max() <= 1.0  # 8-bit rounding


def test_colorize_eval_gives_the_model_each_noun_as_a_users_gray_file(tmp_path):
    from PIL import Image

    from condiff.conditions.registry import get_condition
    from condiff.evaluation.evaluators import gray_file_channels
    from condiff.images import luma, open_image, to_uint8

    gray_encoder = get_condition("grayscale")(level_features=2)
    nouns = held_out_nouns(4, 1002)
    channels = gray_file_channels(gray_encoder, nouns)
    levels = (channels[:, :1] + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # whole 8-bit levels, as a file holds them
    assert ((levels - (luma(nouns) + 1) * 127.5).abs() <= 0.5 + 1e-4).all()  # the luma, rounded
    Image.fromarray(to_uint8(nouns)[1]).convert("L").save(tmp_path / "gray.png")
    assert torch.equal(channels[1:2], gray_encoder.encode_input(open_image(tmp_path / "gray.png"), 32))


def test_luma_error_compares_the_gray_levels_a_file_would_hold():
    colour = torch.tensor([236, 91, 67], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1  # luma 131.62
    gray_132 = torch.full((1, 3, 1, 1), 132 / 127.5 - 1)
    gray_131 = torch.full((1, 3, 1, 1), 131 / 127.5 - 1)
    assert metrics.luma_error(colour, gray_132) == 0.0
    assert metrics.luma_error(colour, gray_131) == 1.0
