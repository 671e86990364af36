"""Hostile or damaged model folders (issue 18, defect 9): every one ends in one error line naming the
folder, exit status 2 and nothing written, through the commands and through `load_pipeline`; nothing is
allocated for it first (a config is checked before diffusers builds anything from it).

Each case copies a shipped model and damages it one way. Before these checks a case crashed with a
traceback, hung or exhausted memory, unless its comment says what it did instead."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from condiff.cli.main import main
from condiff.errors import CondiffError
from condiff.model_folder import load_pipeline, load_unet
from condiff.tasks import TASKS
from tests.conftest import stamps_under

S, U, C, X = "scheduler/scheduler_config.json", "unet/config.json", "conditions/config.json", "model_index.json"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


# --- ways to damage a folder --------------------------------------------------------------------


def edit(rel, **changes):
    def damage(folder):
        values = json.loads((folder / rel).read_text())
        values.update(changes)
        (folder / rel).write_text(json.dumps(values))
    return damage


def write(rel, text):
    return lambda folder: (folder / rel).write_text(text)


def remove(rel):
    def damage(folder):
        shutil.rmtree(folder / rel) if (folder / rel).is_dir() else (folder / rel).unlink()
    return damage


def link(rel, target):
    """Replace `rel` by a symbolic link to `target` (relative to the link; its own name makes a loop)."""
    def damage(folder):
        remove(rel)(folder)
        (folder / rel).symlink_to(target)
    return damage


def fifo(rel):
    def damage(folder):
        remove(rel)(folder)
        os.mkfifo(folder / rel)  # reading it would wait forever
    return damage


def tensors(change):
    """Rewrite the UNet's weights file with `change(tensors)` applied."""
    def damage(folder):
        from safetensors.torch import load_file, save_file

        weights = load_file(folder / UNET_WEIGHTS)
        change(weights)
        save_file(weights, folder / UNET_WEIGHTS, metadata={"format": "pt"})
    return damage


def widen_conv_in(weights):
    weights["conv_in.weight"] = torch.zeros(32, 5, 3, 3, dtype=torch.float16)


CASES = [
    # scheduler/scheduler_config.json
    ("unconditional", edit(S, beta_schedule="cosine"), "beta_schedule unknown"),
    ("colorize", edit(S, beta_schedule="sigmoid"), "beta_schedule DDIM and DPM lack"),
    ("unconditional", edit(S, prediction_type="x0"), "prediction_type unknown"),
    ("colorize", edit(S, trained_betas="abc"), "trained_betas a string"),
    ("unconditional", edit(S, trained_betas=[0.1, 0.2]), "trained_betas too few"),  # sampled
    ("unconditional", edit(S, trained_betas=[1.5] * 1000), "trained_betas above 1"),  # sampled NaN
    ("unconditional", edit(S, num_train_timesteps=1e9), "num_train_timesteps 1e9"),
    ("unconditional", edit(S, num_train_timesteps=10**9, beta_schedule="linear"), "num_train_timesteps 10**9"),
    ("colorize", edit(S, num_train_timesteps=0), "num_train_timesteps 0"),  # an error without the folder
    ("unconditional", edit(S, timestep_spacing="sideways"), "timestep_spacing unknown"),  # sampled
    ("unconditional", edit(S, variance_type="learned"), "variance_type learned"),  # sampled
    ("unconditional", edit(S, solver_order=10**9), "solver_order 10**9"),
    ("colorize", edit(S, use_karras_sigmas=True, use_beta_sigmas=True), "sigmas two kinds"),
    ("unconditional", edit(S, beta_schedule="linear", beta_end=2.0), "beta_end 2"),  # sampled NaN
    ("unconditional", write(S, '{"num_train_timesteps": NaN}'), "num_train_timesteps NaN"),
    ("unconditional", write(S, "[1, 2]"), "scheduler config a list"),  # one line, after asking the Hub
    ("unconditional", write(S, "{" + " " * (2 << 20) + "}"), "scheduler config 2 MB"),  # sampled
    # unet/config.json
    ("unconditional", edit(U, sample_size=0), "sample_size 0"),
    ("colorize", edit(U, sample_size=1), "sample_size 1"),
    ("unconditional", edit(U, sample_size=100_000), "sample_size 1e5"),
    ("colorize", edit(U, sample_size="32"), "sample_size a string"),
    ("unconditional", edit(U, sample_size=30), "sample_size not divisible"),
    ("unconditional", edit(U, in_channels=-3), "in_channels negative"),  # one line
    ("colorize", edit(U, in_channels=10**7), "in_channels huge"),  # one line, after asking for 11.5 GB
    ("unconditional", edit(U, out_channels=0), "out_channels 0"),  # one line
    ("unconditional", edit(U, block_out_channels=[-32, 64, 128]), "block_out_channels negative"),  # one line
    ("unconditional", edit(U, block_out_channels=[32, 64, 10**6]), "block_out_channels huge"),  # one line (36 TB asked)
    ("colorize", edit(U, block_out_channels="wide"), "block_out_channels a string"),  # one line
    ("unconditional", edit(U, layers_per_block=10**6), "layers_per_block 10**6"),  # hung
    ("unconditional", edit(U, norm_num_groups=0), "norm_num_groups 0"),
    ("unconditional", edit(U, class_embed_type="identity"), "class embedding"),
    ("unconditional", edit(U, time_embedding_type="learned", num_train_timesteps=10), "learned time too short"),
    ("unconditional", edit(U, act_fn=["silu"]), "act_fn a list"),
    ("unconditional", edit(U, upsample_type="sideways"), "upsample_type unknown"),
    ("unconditional", edit(U, downsample_padding=2), "downsample_padding 2"),
    ("unconditional", edit(U, attention_head_dim=1000), "attention_head_dim too wide"),  # one line
    ("colorize", write(U, "[]"), "unet config a list"),  # one line, after asking the Hub
    # model_index.json
    ("colorize", write(X, "[]"), "model_index a list"),
    ("unconditional", edit(X, _class_name="StableDiffusionPipeline"), "model_index unknown class"),  # sampled
    ("colorize", edit(X, _class_name=["ConditionalDDPMPipeline"]), "model_index class a list"),
    ("colorize", edit(X, unet=["os", "system"]), "model_index names os.system"),  # one line, after importing it
    ("colorize", edit(X, sampler_steps=10**9), "model_index sampler_steps"),  # sampled
    ("colorize", fifo(X), "model_index a fifo"),
    ("colorize", link(X, "model_index.json"), "model_index a symlink loop"),
    # conditions/config.json
    ("colorize", edit(C, conditions="grayscale"), "conditions a string"),  # an error without the folder
    ("colorize", edit(C, conditions={"name": "grayscale"}), "conditions a dict"),  # likewise
    ("colorize", edit(C, conditions=[{"name": "teleport"}]), "conditions unknown"),  # likewise
    ("colorize", edit(C, conditions=[]), "conditions empty"),
    ("colorize", edit(C, conditions=[{"name": "grayscale"}] * 2), "conditions too many channels"),  # one line
    ("colorize", edit(C, conditions=[{"name": "grayscale", "resize": 7}]), "conditions bad setting"),  # likewise
    ("sketch2img", edit(C, conditions=[{"name": "sketch", "thickness_jitter": 1e9}]), "conditions huge setting"),
    # weights and links
    ("unconditional", remove(UNET_WEIGHTS), "unet weights missing"),  # two lines: diffusers logged it too
    ("colorize", remove("conditions/diffusion_pytorch_model.safetensors"), "condition weights missing"),  # likewise
    ("colorize", write(UNET_WEIGHTS, "garbage"), "unet weights garbage"),  # one line
    ("unconditional", tensors(widen_conv_in), "unet weights wrong shape"),  # one line
    ("unconditional", tensors(lambda weights: weights.pop("conv_out.bias")), "unet weights lack a tensor"),
    ("unconditional", link(UNET_WEIGHTS, "/dev/zero"), "unet weights /dev/zero"),  # likewise
    ("unconditional", link(U, "config.json"), "unet config a symlink loop"),  # one line
    ("colorize", link(S, "scheduler_config.json"), "scheduler config a symlink loop"),  # one line
    ("unconditional", write(U, "[" * 100_000 + "]" * 100_000), "unet config nested deep"),  # one line
]


# --- the checks ---------------------------------------------------------------------------------


def command(base: str, folder: Path, tmp_path: Path) -> tuple[list[str], Path]:
    out = tmp_path / "out.png"
    if base == "unconditional":
        return ["sample", "--model", str(folder), "--num", "1", "--steps", "2", "--out", str(out)], out
    source = tmp_path / "input.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(source)
    return [base, str(source), "--model", str(folder), "--steps", "2", "--out", str(out)], out


@pytest.mark.parametrize(("base", "damage"), [pytest.param(b, d, id=i) for b, d, i in CASES])
def test_a_damaged_folder_is_one_line_and_writes_nothing(base, damage, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(TASKS[base].shipped_folder, folder)
    damage(folder)
    argv, out = command(base, folder, tmp_path)
    before = stamps_under(tmp_path)

    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("condiff: error: ") and str(folder) in lines[0], lines[0]
    assert not out.exists()

    with pytest.raises(CondiffError, match=re.escape(str(folder))):
        load_pipeline(folder)
    assert stamps_under(tmp_path) == before


def test_a_looping_model_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "loop").symlink_to("loop")
    assert main(["sample", "--model", str(tmp_path / "loop"), "--out", str(tmp_path / "o.png")]) == 2
    assert "symbolic links" in capsys.readouterr().err
    with pytest.raises(CondiffError, match="loop: cannot open"):
        load_unet(str(tmp_path / "loop"))


def test_sharded_weights_still_load(tmp_path):
    # diffusers writes a large model as shards named in an index; the weights check reads them all.
    shipped = load_unet(str(TASKS["unconditional"].shipped_folder))
    shipped.save_pretrained(tmp_path / "sharded", max_shard_size="1MB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = load_unet(str(tmp_path / "sharded"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), shipped.state_dict().values(),
                                                 strict=True))
