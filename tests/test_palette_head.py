"""A palette head: the UNet outputs one logit per palette colour, and its clean image is exactly on the palette
where it is sure."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image

from condiff.cli.main import main
from condiff.denoiser import Denoiser
from condiff.images import to_uint8
from condiff.model import predict_x0
from condiff.model_folder import load_pipeline
from condiff.palette import from_hex, palette_tensor, to_hex
from condiff.palette_head import PaletteHead
from tests.conftest import tiny_values
from tests.test_palette import SPRITE_COLORS, sprite


def saved_settings(model: Path) -> dict:
    """What a model folder's Denoiser records (its palette head among them)."""
    return json.loads((model / "denoiser" / "config.json").read_text())


def sure_logits(indices: torch.Tensor, colours: int, margin: float = 40.0) -> torch.Tensor:
    """Logits (N, P, H, W) that put (almost) all the odds on `indices` (N, H, W)."""
    return torch.nn.functional.one_hot(indices, colours).permute(0, 3, 1, 2).float() * margin


def test_pixel_likelihood_until_fades_the_term_out_linearly_by_that_timestep():
    scheduler = DDPMScheduler(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    full = PaletteHead(palette_tensor(SPRITE_COLORS))
    faded = PaletteHead(full.palette, likelihood_until=100)
    output, noisy = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)

    def term(head, t):
        return head.logits(scheduler, output, noisy, t) - output

    for t, weight in ((0, 1.0), (25, 0.75), (50, 0.5), (100, 0.0), (700, 0.0)):
        assert torch.allclose(term(faded, t), weight * term(full, t), rtol=1e-4, atol=1e-3), t
    assert term(full, 50).abs().amax() > 1  # a term worth fading
    per_sample = torch.tensor([0, 100])  # as training draws them
    assert torch.allclose(term(faded, per_sample)[0], term(full, per_sample)[0], rtol=1e-4)
    assert torch.equal(term(faded, per_sample)[1], torch.zeros(4, 5, 5))


def test_a_faded_likelihood_is_saved_reloaded_and_named_on_the_card(sprite_folder, tmp_path, capsys):
    recipe = sprite_recipe(tmp_path, sprite_folder, "faded", model={"pixel_likelihood_until": 20})
    assert main(["train", str(recipe)]) == 0
    assert saved_settings(tmp_path / "faded")["pixel_likelihood_until"] == 20
    assert load_pipeline(tmp_path / "faded").denoiser.head.likelihood_until == 20
    assert "fading to none at t = 20" in (tmp_path / "faded" / "README.md").read_text()
    capsys.readouterr()
    for value, fragment in (("51", "at most scheduler.num_train_timesteps (50)"), ("0", "must be")):
        assert main(["train", str(recipe), "--set", f"model.pixel_likelihood_until={value}",
                     "--set", f"train.output_dir={tmp_path / 'bad'}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "model.pixel_likelihood_until" in err and fragment in err and "\n" not in err
        assert not (tmp_path / "bad").exists()


def test_a_sure_head_gives_exact_palette_colours_and_outputs_that_imply_them():
    head = PaletteHead(palette_tensor(SPRITE_COLORS), pixel_likelihood=False)
    indices = torch.randint(0, 4, (2, 5, 5), generator=torch.Generator().manual_seed(0))
    clean = head.clean_image(sure_logits(indices, 4))
    assert np.array_equal(to_uint8(clean).reshape(-1, 3), SPRITE_COLORS[indices.reshape(-1).numpy()])
    assert torch.equal(head.colour_indices(clean), indices)
    x_t = torch.randn(2, 3, 5, 5)
    for prediction_type in ("epsilon", "v_prediction", "sample"):
        scheduler = DDPMScheduler(prediction_type=prediction_type, beta_schedule="squaredcos_cap_v2")
        for t in (5, 500, 990):
            output = head.output_from_logits(scheduler, sure_logits(indices, 4), x_t, t)
            assert torch.allclose(predict_x0(scheduler, output, x_t, t), clean, atol=1e-4)


def test_the_pixel_likelihood_makes_a_barely_noised_pixel_sure_of_its_colour_and_fades_with_noise():
    head = PaletteHead(palette_tensor(SPRITE_COLORS))
    indices = torch.randint(0, 4, (2, 6, 6), generator=torch.Generator().manual_seed(2))
    clean = palette_tensor(SPRITE_COLORS)[indices].permute(0, 3, 1, 2)
    scheduler = DDPMScheduler(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    unsure = torch.zeros(2, 4, 6, 6)  # a UNet that says nothing: the odds are the pixel's own
    for t, sure in ((1, True), (999, False)):
        noisy = scheduler.add_noise(clean, noise, torch.tensor([t]))
        odds = head.logits(scheduler, unsure, noisy, t).softmax(dim=1)
        if sure:
            assert torch.equal(odds.argmax(dim=1), indices) and bool((odds.amax(dim=1) > 0.999).all())
            assert np.array_equal(to_uint8(head.clean_image(odds.log())), to_uint8(clean))
        else:
            assert torch.allclose(odds, torch.full_like(odds, 0.25), atol=1e-3)
    # Without it (heads saved before it), the odds are the UNet's alone.
    odds = PaletteHead(head.palette, pixel_likelihood=False).logits(scheduler, unsure, noisy, 1).softmax(dim=1)
    assert torch.allclose(odds, torch.full_like(odds, 0.25))


def test_the_cross_entropy_rewards_the_right_colours_and_nothing_else():
    head = PaletteHead(palette_tensor(SPRITE_COLORS))
    indices = torch.randint(0, 4, (3, 4, 4), generator=torch.Generator().manual_seed(1))
    clean = head.clean_image(sure_logits(indices, 4))
    right = head.loss(sure_logits(indices, 4, margin=8.0), clean)
    wrong = head.loss(sure_logits((indices + 1) % 4, 4, margin=8.0), clean)
    unsure = head.loss(torch.zeros(3, 4, 4, 4), clean)
    assert right.shape == (3,) and bool((right < 0.01).all())
    assert torch.allclose(unsure, torch.full((3,), float(np.log(4))))
    assert bool((wrong > unsure).all())


@pytest.fixture(scope="module")
def sprite_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sprites") / "data"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(16):
        Image.fromarray(sprite(rng)).save(folder / f"{i}.png")
    return folder


def sprite_recipe(tmp_path, folder, name: str, model=None, data=None):
    values = tiny_values(tmp_path / name, max_steps=2)
    values["data"] = {"source": str(folder), "resolution": 16, "size": None, **(data or {})}
    # The likelihood fades by t = 5 of the tiny recipe's 50 timesteps, as the default does by 100 of 1000.
    values["model"].update({"palette_head": True, "pixel_likelihood_until": 5, **(model or {})})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_sprite_folder_trains_a_palette_head_that_is_saved_reloaded_and_sampled(sprite_folder, tmp_path, capsys):
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "head"))]) == 0
    model = tmp_path / "head"
    index = saved_settings(model)
    assert index["palette_head"] is True and len(index["palette"]) == 4
    assert "Palette head" in (model / "README.md").read_text()
    # Plain diffusers still loads the UNet: 4 outputs, one per palette colour.
    assert UNet2DModel.from_pretrained(model / "unet").config.out_channels == 4
    pipeline = load_pipeline(model)
    pipeline.set_progress_bar_config(disable=True)
    # A head sure of one colour everywhere gives exactly that colour through the whole sampler, unsnapped.
    colours = [tuple(colour) for colour in from_hex(index["palette"]).tolist()]
    with torch.no_grad():
        pipeline.unet.conv_out.weight.zero_()
        pipeline.unet.conv_out.bias.copy_(torch.tensor([0.0, 0.0, 40.0, 0.0]))
    for sampler_steps, sampler in ((20, None), (10, "ddim"), (50, "ddpm")):
        if sampler:
            from condiff.sampling import make_sampler

            pipeline.scheduler = make_sampler(pipeline.scheduler, sampler)
        images = pipeline(batch_size=2, num_inference_steps=sampler_steps, seed=0, output_type="latent",
                          palette="off").images
        assert set(map(tuple, to_uint8(images).reshape(-1, 3).tolist())) == {colours[2]}, sampler
    out = tmp_path / "grid.png"
    assert main(["sample", "--model", str(model), "--num", "2", "--steps", "3", "--palette", "off",
                 "--out", str(out)]) == 0
    assert Image.open(out).size[1] == 16 * 4 + 2  # one row of 2 samples at --scale 4, with its border


def test_a_head_saved_before_the_pixel_likelihood_samples_as_it_was_trained(sprite_folder, tmp_path):
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "new"))]) == 0
    index_file = tmp_path / "new" / "denoiser" / "config.json"
    index = json.loads(index_file.read_text())
    assert index["pixel_likelihood"] is True
    palette = palette_tensor(from_hex(index["palette"]))

    def sampled_colours() -> set:
        pipeline = load_pipeline(tmp_path / "new")
        pipeline.set_progress_bar_config(disable=True)
        with torch.no_grad():  # a UNet that says nothing
            pipeline.unet.conv_out.weight.zero_()
            pipeline.unet.conv_out.bias.zero_()
        images = pipeline(batch_size=2, num_inference_steps=10, seed=0, output_type="latent", palette="off").images
        return set(map(tuple, to_uint8(images).reshape(-1, 3).tolist()))

    # With it, the last steps' noisy pixels pick palette colours; without it, every pixel is the mean colour.
    assert sampled_colours() <= {tuple(colour) for colour in SPRITE_COLORS.tolist()}
    del index["pixel_likelihood"]
    index_file.write_text(json.dumps(index))
    assert sampled_colours() == {tuple(to_uint8(palette.mean(dim=0).view(1, 3, 1, 1)).reshape(3).tolist())}


def test_a_palette_head_trains_with_self_conditioning(sprite_folder, tmp_path):
    recipe = sprite_recipe(tmp_path, sprite_folder, "both", model={"self_condition": True})
    assert main(["train", str(recipe)]) == 0
    pipeline = load_pipeline(tmp_path / "both")
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=2, num_inference_steps=3, seed=0, output_type="latent").images
    assert images.shape == (2, 3, 16, 16) and bool(torch.isfinite(images).all())


def test_training_a_palette_head_reads_the_data_for_its_palette_once(sprite_folder, tmp_path, monkeypatch):
    import condiff.palette

    searches = []
    find_palette = condiff.palette.find_palette
    monkeypatch.setattr(condiff.palette, "find_palette", lambda *args: searches.append(args) or find_palette(*args))
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "once"))]) == 0
    assert len(searches) == 1


def test_a_palette_head_without_a_palette_is_one_line_and_writes_nothing(sprite_folder, tmp_path, capsys):
    recipe = sprite_recipe(tmp_path, sprite_folder, "none", data={"palette": "off"})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.palette_head" in err and "data.palette" in err and "\n" not in err
    assert not (tmp_path / "none").exists()


def test_init_from_a_model_without_the_head_is_one_line(sprite_folder, tmp_path, capsys):
    plain = sprite_recipe(tmp_path, sprite_folder, "plain", model={"palette_head": False})
    assert main(["train", str(plain)]) == 0
    capsys.readouterr()
    recipe = sprite_recipe(tmp_path, sprite_folder, "fine", model={"init_from": str(tmp_path / "plain")})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.init_from" in err and "outputs 3 channels" in err and "\n" not in err


def test_a_warm_start_keeps_the_heads_palette_and_must_match_its_likelihood(sprite_folder, tmp_path, capsys):
    # A head trained without the pixel likelihood (as the shipped unconditional model was), then a colorize
    # model started from it on sprites without the eye colour: it keeps all 4 colours, in their order (they
    # are its outputs), and its recipe must say the same pixel likelihood, or nothing is trained.
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "base",
                                            model={"pixel_likelihood": False}))]) == 0
    base = saved_settings(tmp_path / "base")
    assert base["pixel_likelihood"] is False
    no_eyes = tmp_path / "no-eyes"
    no_eyes.mkdir()
    for picture in sorted(sprite_folder.iterdir())[:8]:
        pixels = np.asarray(Image.open(picture).convert("RGB")).copy()
        pixels[(pixels == SPRITE_COLORS[3]).all(axis=-1)] = SPRITE_COLORS[2]
        Image.fromarray(pixels).save(no_eyes / picture.name)
    recipe = sprite_recipe(tmp_path, no_eyes, "fine", model={"init_from": str(tmp_path / "base")})
    values = yaml.safe_load(recipe.read_text())
    values["conditions"] = [{"name": "grayscale"}]
    recipe.write_text(yaml.safe_dump(values))
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 2  # the default adds the likelihood
    err = capsys.readouterr().err.strip()
    assert "set model.pixel_likelihood: false" in err and "palette head was trained with" in err and "\n" not in err
    assert not (tmp_path / "fine").exists()
    # Without the likelihood its fade trains nothing: any value of it goes on from the base.
    assert main(["train", str(recipe), "--set", "model.pixel_likelihood=false"]) == 0
    assert "palette head (model.init_from)" in capsys.readouterr().out
    fine = saved_settings(tmp_path / "fine")
    assert fine["palette"] == base["palette"] and fine["pixel_likelihood"] is False
    assert "(`pixel_likelihood: false`)" in (tmp_path / "fine" / "README.md").read_text()  # the card says so
    assert load_pipeline(tmp_path / "fine").unet.config.out_channels == 4


def test_a_warm_start_from_a_head_with_the_likelihood_must_match_its_fade(sprite_folder, tmp_path, capsys):
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "base"))]) == 0  # fading by t = 5
    recipe = sprite_recipe(tmp_path, sprite_folder, "fine", model={"init_from": str(tmp_path / "base")})
    capsys.readouterr()
    for until in ("10", "null"):
        assert main(["train", str(recipe), "--set", f"model.pixel_likelihood_until={until}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "set model.pixel_likelihood_until: 5" in err and "palette head was trained with" in err
        assert "\n" not in err and not (tmp_path / "fine").exists()
    assert main(["train", str(recipe)]) == 0
    assert saved_settings(tmp_path / "fine")["pixel_likelihood_until"] == 5


def test_by_default_the_likelihood_fades_by_a_tenth_of_the_default_timesteps(sprite_folder, tmp_path, capsys):
    recipe = sprite_recipe(tmp_path, sprite_folder, "default")
    values = yaml.safe_load(recipe.read_text())
    del values["model"]["pixel_likelihood_until"]
    values["scheduler"]["num_train_timesteps"] = 1000
    recipe.write_text(yaml.safe_dump(values))
    assert main(["train", str(recipe)]) == 0
    index = saved_settings(tmp_path / "default")
    assert index["pixel_likelihood"] is True and index["pixel_likelihood_until"] == 100
    assert load_pipeline(tmp_path / "default").denoiser.head.likelihood_until == 100
    # Fewer timesteps than the default fade: one line that says what to set, and nothing trained.
    capsys.readouterr()
    out = tmp_path / "short"
    assert main(["train", str(recipe), "--set", "scheduler.num_train_timesteps=50",
                 "--set", f"train.output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.pixel_likelihood_until = 100" in err and "at most scheduler.num_train_timesteps (50)" in err
    assert "\n" not in err and not out.exists()
    # ... which a head without the likelihood never meets: it has nothing to fade.
    assert main(["train", str(recipe), "--set", "scheduler.num_train_timesteps=50",
                 "--set", "model.pixel_likelihood=false", "--set", f"train.output_dir={out}"]) == 0
    assert saved_settings(out)["pixel_likelihood_until"] is None


def test_a_folder_whose_unet_does_not_fit_its_palette_head_is_one_line(sprite_folder, tmp_path, capsys):
    assert main(["train", str(sprite_recipe(tmp_path, sprite_folder, "head"))]) == 0
    capsys.readouterr()
    for change, fragment in ((lambda index: index.pop("palette_head"), "out_channels = 4, but this model needs 3"),
                             (lambda index: index.update(palette=index["palette"][:3]), "needs 3: one per colour")):
        copy = tmp_path / "damaged"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(tmp_path / "head", copy)
        index = saved_settings(copy)
        index.pop("palette_frequencies")
        change(index)
        (copy / "denoiser" / "config.json").write_text(json.dumps(index))
        assert main(["sample", "--model", str(copy), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err and not (tmp_path / "x.png").exists()


def test_a_palette_head_resumes_only_with_the_palette_it_was_trained_with(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(8):
        Image.fromarray(sprite(rng)).save(folder / f"{i}.png")
    recipe = sprite_recipe(tmp_path, folder, "run")
    assert main(["train", str(recipe)]) == 0
    checkpoint = tmp_path / "run" / "checkpoints"
    assert main(["train", str(recipe), "--set", "train.resume=latest", "--set", "train.max_steps=4"]) == 0
    capsys.readouterr()
    new_colour = sprite(rng)
    new_colour[0, 0] = [1, 2, 3]
    Image.fromarray(new_colour).save(folder / "0.png")  # the first images are where the palette is found
    before = sorted(p.name for p in checkpoint.iterdir())
    assert main(["train", str(recipe), "--set", "train.resume=latest", "--set", "train.max_steps=6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "palette" in err and "new train.output_dir" in err and "\n" not in err
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_a_head_checkpoint_saved_before_the_pixel_likelihood_resumes_only_without_it(sprite_folder, tmp_path,
                                                                                     capsys):
    from condiff.training.checkpoints import STATE_FILE, list_checkpoints, write_checksums

    recipe = sprite_recipe(tmp_path, sprite_folder, "old")
    assert main(["train", str(recipe)]) == 0
    checkpoint = list_checkpoints(tmp_path / "old")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert "pixel_likelihood" not in state  # the recipe's key says it
    del state["recipe"]["model"]["pixel_likelihood"], state["recipe"]["model"]["pixel_likelihood_until"]
    (checkpoint / STATE_FILE).write_text(json.dumps(state))  # as an earlier condiff wrote it
    write_checksums(checkpoint)
    capsys.readouterr()
    resume = [str(recipe), "--set", "train.resume=latest", "--set", "train.max_steps=3"]
    assert main(["train", *resume]) == 2  # the recipe's default adds the likelihood: not what it trained
    err = capsys.readouterr().err.strip()
    assert "model.pixel_likelihood: False -> True" in err and "\n" not in err
    assert len(list_checkpoints(tmp_path / "old")) == 1
    assert main(["train", *resume, "--set", "model.pixel_likelihood=false"]) == 0
    assert saved_settings(tmp_path / "old")["pixel_likelihood"] is False
    state = json.loads((list_checkpoints(tmp_path / "old")[-1] / STATE_FILE).read_text())
    assert state["step"] == 3 and state["recipe"]["model"]["pixel_likelihood"] is False


def test_a_head_checkpoint_saved_before_the_fade_existed_resumes_only_without_it(sprite_folder, tmp_path,
                                                                               capsys):
    from condiff.training.checkpoints import STATE_FILE, list_checkpoints, write_checksums

    recipe = sprite_recipe(tmp_path, sprite_folder, "old", model={"pixel_likelihood_until": None})
    assert main(["train", str(recipe)]) == 0
    checkpoint = list_checkpoints(tmp_path / "old")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    del state["recipe"]["model"]["pixel_likelihood_until"]  # it trained with the term at every timestep
    (checkpoint / STATE_FILE).write_text(json.dumps(state))
    write_checksums(checkpoint)
    capsys.readouterr()
    resume = [str(recipe), "--set", "train.resume=latest", "--set", "train.max_steps=3"]
    assert main(["train", *resume, "--set", "model.pixel_likelihood_until=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.pixel_likelihood_until: None -> 5" in err and "\n" not in err
    assert main(["train", *resume]) == 0
    assert saved_settings(tmp_path / "old")["pixel_likelihood_until"] is None


def test_a_head_checkpoint_whose_state_recorded_the_likelihood_resumes_as_it_says(sprite_folder, tmp_path, capsys):
    # Between the likelihood's arrival and its recipe key, the trainer state recorded it beside the recipe.
    from condiff.training.checkpoints import STATE_FILE, list_checkpoints, write_checksums

    recipe = sprite_recipe(tmp_path, sprite_folder, "middle", model={"pixel_likelihood_until": None})
    assert main(["train", str(recipe)]) == 0
    checkpoint = list_checkpoints(tmp_path / "middle")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    del state["recipe"]["model"]["pixel_likelihood"], state["recipe"]["model"]["pixel_likelihood_until"]
    state["pixel_likelihood"] = True
    (checkpoint / STATE_FILE).write_text(json.dumps(state))
    write_checksums(checkpoint)
    capsys.readouterr()
    resume = [str(recipe), "--set", "train.resume=latest", "--set", "train.max_steps=3"]
    for setting, change in (("model.pixel_likelihood=false", "model.pixel_likelihood: True -> False"),
                            ("model.pixel_likelihood_until=5", "model.pixel_likelihood_until: None -> 5")):
        assert main(["train", *resume, "--set", setting]) == 2
        err = capsys.readouterr().err.strip()
        assert change in err and "\n" not in err
    assert main(["train", *resume]) == 0
    assert saved_settings(tmp_path / "middle")["pixel_likelihood"] is True


def test_the_sketch2img_recipes_chain_from_the_shipped_head(tmp_path):
    """Each stage of recipes/sketch2img*.yaml trains from the one before: the shipped unconditional model's head
    and its pixel-likelihood setting go on through all three."""
    recipes = Path(__file__).parents[1] / "recipes"
    tiny = [f"--set={key}" for key in ("data.size=16", "train.max_steps=1", "train.batch_size=2",
                                        "train.sample_every=0", "train.checkpoint_every=0", "train.tensorboard=false")]
    before = "shipped:unconditional"
    for stage in ("sketch2img", "sketch2img-finetune", "sketch2img-fill"):
        out = tmp_path / stage
        assert main(["train", str(recipes / f"{stage}.yaml"), *tiny, f"--set=model.init_from={before}",
                     f"--set=train.output_dir={out}"]) == 0, stage
        index = saved_settings(out)
        assert index["palette_head"] is True and index["pixel_likelihood"] is False
        before = str(out)


class FixedOdds(torch.nn.Module):
    """A stand-in UNet whose colour odds are fixed: the true colours of `clean` with a given margin."""

    def __init__(self, head, clean: torch.Tensor, margin: float) -> None:
        super().__init__()
        self.logits = sure_logits(head.colour_indices(clean), head.channels, margin)

    def forward(self, model_input, timesteps):
        from types import SimpleNamespace

        return SimpleNamespace(sample=self.logits)


def test_with_min_snr_the_cross_entropy_term_asks_for_sure_colours_where_the_squared_error_hardly_does():
    from condiff.training.loss import diffusion_loss

    denoiser = Denoiser(palette=to_hex(SPRITE_COLORS), palette_head=True, pixel_likelihood=False)  # the UNet's odds
    head = denoiser.head
    clean = head.clean_image(sure_logits(torch.randint(0, 4, (8, 6, 6)), 4))
    scheduler = DDPMScheduler(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")

    def loss(margin: float, ce_weight: float) -> float:
        torch.manual_seed(0)  # the same timesteps and noise for every variant
        return float(diffusion_loss(denoiser, FixedOdds(head, clean, margin), scheduler, clean, min_snr_gamma=5.0,
                                    ce_weight=ce_weight))

    sure, unsure = 12.0, 4.0  # the right colour with odds of about 1 - 3e-6 and 1 - 0.05
    assert loss(sure, 1.0) < 1e-3
    squared_gap = loss(unsure, 0.0) - loss(sure, 0.0)
    assert 0 < squared_gap and loss(unsure, 1.0) - loss(sure, 1.0) > 2 * squared_gap


def test_a_warm_started_head_whose_palette_does_not_fit_the_data_is_refused(tmp_path, capsys):
    import numpy as np
    import yaml
    from PIL import Image

    from tests.conftest import one_line_error, tiny_values

    folder = tmp_path / "emoji"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # smooth photo-like colours, few of them Nouns colours
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    values = tiny_values(tmp_path / "run")
    values["data"] = {"source": str(folder), "size": None}
    values["model"] = {"init_from": "shipped:unconditional", "palette_head": True, "pixel_likelihood": False}
    values["conditions"] = [{"name": "grayscale"}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(values))
    one_line_error(capsys, ["train", str(recipe)], "its palette head paints only its")
    assert not (tmp_path / "run").exists()
