"""Train -> save -> load -> sample, checkpoints and resume, on a tiny model."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from condiff.config import recipe_from_dict
from condiff.errors import CondiffError
from condiff.training.checkpoints import STATE_FILE, list_checkpoints, write_checksums
from condiff.training.from_recipe import train_recipe
from tests.conftest import tiny_values, train_fails, write_tiny_recipe


def unet_weights(folder):
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def test_train_save_load_sample_round_trip(tiny_recipe):
    from diffusers import DDPMPipeline

    result = train_recipe(tiny_recipe)
    out = result.output_dir
    assert result.steps == 4 and np.isfinite(result.final_loss)
    # The folder is a plain diffusers pipeline.
    pipeline = DDPMPipeline.from_pretrained(out)
    images = pipeline(batch_size=1, num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 32, 32, 3)
    assert (out / "recipe.yaml").exists() and (out / "samples" / "final.png").exists()
    # Only the last K complete checkpoints are kept.
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004"]

    from condiff.model_folder import load_scheduler, load_unet, saved_denoiser
    from condiff.sampling import SAMPLERS, generate, make_sampler

    unet, denoiser = load_unet(str(out)), saved_denoiser(out)
    for kind in SAMPLERS:
        samples = generate(denoiser, unet, make_sampler(load_scheduler(str(out)), kind), 2, 3, seed=1, record=True)
        assert samples.images.shape == (2, 3, 32, 32)
        assert samples.images.min() >= -1 and samples.images.max() <= 1
        assert len(samples.noisy) == len(samples.predicted) == 3


def test_same_seed_same_losses_and_weights(tmp_path):
    first = train_recipe(recipe_from_dict(tiny_values(tmp_path / "a")))
    second = train_recipe(recipe_from_dict(tiny_values(tmp_path / "b")))
    a = unet_weights(first.output_dir)
    b = unet_weights(second.output_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def assert_same(x, y):
    """Recursive bitwise equality of nested states (tensors, numpy arrays, containers, numbers)."""
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y)
    elif isinstance(x, np.ndarray):
        assert np.array_equal(x, y)
    elif isinstance(x, dict):
        assert x.keys() == y.keys()
        for key in x:
            assert_same(x[key], y[key])
    elif isinstance(x, list | tuple):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            assert_same(u, v)
    else:
        assert x == y


class Killed(Exception):
    pass


# (2, 24): resumed mid-epoch, in the 2nd epoch; compile: a torch.compile'd training step saves and resumes the
# same weights (its first compile takes a minute on 2 CPU cores).
@pytest.mark.parametrize("grad_accum, size, compile", [(1, 32, False), (2, 24, False), (1, 32, True)])
def test_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, grad_accum, size, compile):
    import condiff.training.trainer as trainer_module

    def values(name, **train):
        values = tiny_values(tmp_path / name, max_steps=4, grad_accum=grad_accum, compile=compile, **train)
        values["data"] = {**values["data"], "size": size}
        return recipe_from_dict(values)

    full = train_recipe(values("full"))
    # The same run dies right after its step-2 checkpoint, then resumes to step 4.
    real_save = trainer_module.save_checkpoint

    def save_then_die(accelerator, output_dir, step, *args):
        real_save(accelerator, output_dir, step, *args)
        if step == 2:
            raise Killed

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_recipe(values("split"))
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    resumed = train_recipe(values("split", resume="latest"))
    full_state = json.loads((full.output_dir / "checkpoints/step-00000004/trainer_state.json").read_text())
    resumed_state = json.loads((resumed.output_dir / "checkpoints/step-00000004/trainer_state.json").read_text())
    assert resumed_state["loss_history"] == full_state["loss_history"]
    a, b = unet_weights(full.output_dir), unet_weights(resumed.output_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any("_orig_mod" in key for key in a)  # the plain UNet's names, loadable by diffusers
    # Optimizer moments, LR scheduler and EMA weights match too (the checkpoints' own files).
    for name in ("optimizer.bin", "scheduler.bin", "custom_checkpoint_0.pkl"):
        x = torch.load(full.output_dir / "checkpoints/step-00000004" / name, weights_only=False)
        y = torch.load(resumed.output_dir / "checkpoints/step-00000004" / name, weights_only=False)
        assert_same(x, y)


def test_resume_errors(tmp_path):
    with pytest.raises(CondiffError, match="no checkpoint"):
        train_recipe(recipe_from_dict(tiny_values(tmp_path / "none", resume="latest")))
    with pytest.raises(CondiffError, match="not a complete condiff checkpoint"):
        train_recipe(recipe_from_dict(tiny_values(tmp_path / "x", resume=str(tmp_path / "x/checkpoints/typo"))))
    with pytest.raises(CondiffError, match="not a checkpoint of this run"):
        train_recipe(recipe_from_dict(tiny_values(tmp_path / "x", resume=str(tmp_path / "elsewhere"))))
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)))
    changed = tiny_values(tmp_path / "run", max_steps=4, resume="latest", lr=5e-3)
    with pytest.raises(CondiffError, match=r"train.lr: 0.001 -> 0.005"):
        train_recipe(recipe_from_dict(changed))


def test_a_checkpoint_from_before_a_recipe_key_existed_resumes_at_that_keys_default(tmp_path):
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)))
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    del state["recipe"]["train"]["palette_ce_weight"], state["recipe"]["data"]["palette_size"]
    (checkpoint / STATE_FILE).write_text(json.dumps(state))  # as a condiff from before those keys wrote it
    write_checksums(checkpoint)
    changed = tiny_values(tmp_path / "run", max_steps=4, resume="latest", palette_ce_weight=0.5)
    with pytest.raises(CondiffError, match=r"train.palette_ce_weight: 1.0 -> 0.5"):
        train_recipe(recipe_from_dict(changed))  # a new key's default is what the checkpoint trained with
    resumed = train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=4, resume="latest")))
    assert resumed.steps == 4


def test_a_run_without_a_head_resumes_whatever_the_pixel_likelihood_keys_say(tmp_path):
    # They train nothing without a palette head: a checkpoint saved when the fade's default was null resumes
    # under today's default, and under any values of both.
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)))
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    state["recipe"]["model"]["pixel_likelihood_until"] = None
    (checkpoint / STATE_FILE).write_text(json.dumps(state))
    write_checksums(checkpoint)
    values = tiny_values(tmp_path / "run", max_steps=4, resume="latest")
    values["model"] = {**values["model"], "pixel_likelihood": False, "pixel_likelihood_until": 7}
    assert train_recipe(recipe_from_dict(values)).steps == 4


def test_refuses_to_train_over_an_earlier_run(tmp_path):
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)))
    before = unet_weights(tmp_path / "run")
    with pytest.raises(CondiffError, match="already holds a run"):
        train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)))
    after = unet_weights(tmp_path / "run")
    assert all(torch.equal(before[k], after[k]) for k in before)
    train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=2)), overwrite=True)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_other_prediction_types_train(tmp_path, prediction_type):
    values = tiny_values(tmp_path / "run", max_steps=2)
    values["scheduler"] = {**values["scheduler"], "prediction_type": prediction_type}
    result = train_recipe(recipe_from_dict(values))
    assert np.isfinite(result.final_loss)


def test_nan_losses_are_skipped_then_stop_training(tmp_path, monkeypatch):
    import condiff.training.trainer as trainer_module

    real_loss = trainer_module.diffusion_loss
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] in (2, 3) else loss

    monkeypatch.setattr(trainer_module, "diffusion_loss", sometimes_nan)
    result = train_recipe(recipe_from_dict(tiny_values(tmp_path / "a", max_steps=4)))
    summary = json.loads((result.output_dir / "training_summary.json").read_text())
    assert result.steps == 4 and summary["skipped_updates"] == 2
    assert all(np.isfinite(v) for v in json.loads(
        (result.output_dir / "checkpoints/step-00000004/trainer_state.json").read_text())["loss_history"])

    monkeypatch.setattr(trainer_module, "diffusion_loss", lambda *a, **k: real_loss(*a, **k) * float("inf"))
    with pytest.raises(CondiffError, match="stopped at step 1: the loss was NaN or Inf 3 times in a row"):
        train_recipe(recipe_from_dict(tiny_values(tmp_path / "b", max_steps=4, max_bad_updates=3)))
    assert list_checkpoints(tmp_path / "b") == []


def test_truncated_weights_give_a_clear_error(tiny_recipe):
    from condiff.model_folder import load_unet

    out = train_recipe(tiny_recipe).output_dir
    weights = out / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CondiffError, match="could not load the UNet"):
        load_unet(str(out))


def test_a_batch_equals_single_runs_and_seeds_repeat(tiny_recipe):
    from condiff.model_folder import load_scheduler, load_unet, saved_denoiser
    from condiff.sampling import generate, make_sampler

    out = train_recipe(tiny_recipe).output_dir
    unet, denoiser = load_unet(str(out)).eval(), saved_denoiser(out)
    sampler = make_sampler(load_scheduler(str(out)), "ddpm")
    batch = generate(denoiser, unet, sampler, 4, 5, seed=10).images
    singles = torch.cat([generate(denoiser, unet, sampler, 1, 5, seed=10 + i).images for i in range(4)])
    assert torch.allclose(batch, singles, atol=1e-5)
    assert torch.equal(batch, generate(denoiser, unet, sampler, 4, 5, seed=10).images)


def test_max_minutes_stops_early_and_still_saves_the_model(tmp_path):
    # A limit already spent after the first update: one step, then a checkpoint and the model.
    recipe = recipe_from_dict(tiny_values(tmp_path / "run", max_steps=50, max_minutes=1e-6))
    result = train_recipe(recipe)
    assert result.steps == 1
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["steps"] == 1
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000001"]
    assert (tmp_path / "run" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_compile_without_a_cpp_compiler_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    recipe, run = write_tiny_recipe(tmp_path, compile=True)
    line = train_fails(capsys, str(recipe))
    assert "train.compile" in line and "C++ compiler" in line
    assert not run.exists()


def test_matmul_attention_computes_what_the_fused_attention_does():
    """The CPU trainer swaps diffusers' fused attention for its matmul processor (faster to differentiate):
    the outputs and the gradients must be the same up to float32 rounding."""
    import copy

    from condiff.config import ModelConfig
    from condiff.model import build_unet, use_matmul_attention

    torch.manual_seed(0)
    fused = build_unet(ModelConfig(channels=[32, 32], attention=[False, True]), 16)
    matmul = copy.deepcopy(fused)
    use_matmul_attention(matmul)
    images, timesteps = torch.randn(2, 3, 16, 16), torch.tensor([3, 700])
    results = []
    for unet in (fused, matmul):
        output = unet(images, timesteps).sample
        output.square().mean().backward()
        results.append((output.detach(), [p.grad for p in unet.parameters()]))
    (fused_out, fused_grads), (matmul_out, matmul_grads) = results
    torch.testing.assert_close(matmul_out, fused_out, atol=1e-5, rtol=1e-4)
    for a, b in zip(matmul_grads, fused_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_an_overflowing_fp16_gradient_is_skipped_and_training_goes_on(tmp_path, monkeypatch):
    """fp16 on a GPU scales the loss; a gradient that overflows is skipped and the scale lowered, as
    torch's GradScaler does, instead of failing at the next step. accelerate's fp16 set-up is emulated on
    the CPU with torch's own GradScaler."""
    import condiff.training.trainer as trainer_module

    real_make = trainer_module.Trainer._make_accelerator

    def with_a_loss_scaler(self):
        accelerator = real_make(self)
        accelerator.scaler, accelerator.native_amp = torch.amp.GradScaler("cpu"), True
        monkeypatch.setattr(type(accelerator), "mixed_precision", property(lambda _: "fp16"))
        return accelerator

    real_loss, calls = trainer_module.diffusion_loss, {"n": 0}

    def overflowing_once(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * 1e36 if calls["n"] == 2 else loss  # finite, but scaled by 65536 it is not

    monkeypatch.setattr(trainer_module.Trainer, "_make_accelerator", with_a_loss_scaler)
    monkeypatch.setattr(trainer_module, "diffusion_loss", overflowing_once)
    result = train_recipe(recipe_from_dict(tiny_values(tmp_path / "run", max_steps=3, checkpoint_every=0)))
    summary = json.loads((result.output_dir / "training_summary.json").read_text())
    assert result.steps == 3 and summary["skipped_updates"] == 1
