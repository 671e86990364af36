"""Issue 43, defects 6, 8 and 11: what a model folder or a checkpoint may hold before condiff uses it.

6. a model folder whose UNet weights hold NaN or infinities, or are not floating point (cast to int8), is
   refused at load with one line naming the weights file: before, it sampled a black image with exit 0;
8. only the run's own checkpoint folders are resumed: a `step-*` entry that is a link (to another run's
   checkpoint, or to a sibling), or a folder of links, is passed over by `latest` with a notice and refused
   by path; before, it was resumed;
11. a checkpoint missing a random state is damaged: `latest` falls back to the previous checkpoint, a path
    names the missing file; before, the advice was `accelerate launch --num_processes 0`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from condiff.errors import CondiffError
from condiff.model_folder import load_pipeline, load_unet
from condiff.tasks import TASKS
from tests.conftest import one_line_error, stamps_under, train_fails, train_succeeds
from tests.test_training_safety import MANIFEST, STEP_2, STEP_4, assert_resumed_exactly, copy_run, snapshot

WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_WEIGHTS = f"unet/{WEIGHTS}"
NAN_TENSOR, INF_TENSOR = "conv_out.weight", "down_blocks.0.resnets.0.conv1.weight"


# --- 6. weights that are not finite floating-point numbers ---------------------------------------


def all_nan(weights: dict[str, torch.Tensor]) -> str:
    weights[NAN_TENSOR] = torch.full_like(weights[NAN_TENSOR], float("nan"))
    return NAN_TENSOR


def one_inf(weights: dict[str, torch.Tensor]) -> str:
    weights[INF_TENSOR] = weights[INF_TENSOR].clone()
    weights[INF_TENSOR].view(-1)[7] = float("inf")  # a single value of another tensor
    return INF_TENSOR


def int8_cast(weights: dict[str, torch.Tensor]) -> str:
    for name in weights:
        weights[name] = weights[name].to(torch.int8)  # every weight between -1 and 1 becomes 0
    return "int8"


def one_uint8(weights: dict[str, torch.Tensor]) -> str:
    weights[INF_TENSOR] = weights[INF_TENSOR].to(torch.uint8)
    return INF_TENSOR


DAMAGES = [all_nan, one_inf, int8_cast, one_uint8]


def damaged_copy(base: str, folder: Path, damage: Callable[[dict], str]) -> str:
    """A copy of a shipped model with its UNet weights rewritten by `damage`; returns what the error names."""
    shutil.copytree(TASKS[base].shipped_folder, folder)
    weights = load_file(folder / UNET_WEIGHTS)
    named = damage(weights)
    save_file(weights, folder / UNET_WEIGHTS, metadata={"format": "pt"})
    return named


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_sampling_a_model_with_non_finite_or_integer_weights_is_one_line(damage, tmp_path, capsys):
    folder, out = tmp_path / "model", tmp_path / "out.png"
    named = damaged_copy("unconditional", folder, damage)
    before = stamps_under(tmp_path)
    error = one_line_error(capsys, ["sample", "--model", str(folder), "--num", "1", "--steps", "2", "--out",
                                    str(out)], f"{folder}: {UNET_WEIGHTS}: ")
    assert named in error, error
    assert not out.exists() and stamps_under(tmp_path) == before


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_load_unet_refuses_non_finite_or_integer_weights(damage, tmp_path):
    folder = tmp_path / "model"
    named = damaged_copy("unconditional", folder, damage)
    for source, file in ((folder, UNET_WEIGHTS), (folder / "unet", WEIGHTS)):  # a pipeline folder, a bare UNet
        with pytest.raises(CondiffError, match=rf"{re.escape(f'{source}: {file}: ')}.*{named}") as error:
            load_unet(str(source))
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_a_conditional_model_with_non_finite_or_integer_weights_is_refused(damage, tmp_path):
    folder = tmp_path / "model"
    named = damaged_copy("colorize", folder, damage)
    with pytest.raises(CondiffError, match=rf"{re.escape(f'{folder}: {UNET_WEIGHTS}: ')}.*{named}"):
        load_pipeline(folder)


def test_a_non_finite_weight_in_a_shard_names_that_shard(tmp_path):
    load_unet(str(TASKS["unconditional"].shipped_folder)).save_pretrained(tmp_path, max_shard_size="1MB")
    shard_of = json.loads((tmp_path / f"{WEIGHTS}.index.json").read_text())["weight_map"]
    name = sorted(shard_of, key=lambda n: shard_of[n])[-1]  # a tensor of the last shard
    weights = load_file(tmp_path / shard_of[name])
    weights[name] = torch.full_like(weights[name], float("-inf"))
    save_file(weights, tmp_path / shard_of[name], metadata={"format": "pt"})
    with pytest.raises(CondiffError, match=re.escape(f"{tmp_path}: {shard_of[name]}: ")):
        load_unet(str(tmp_path))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float32_and_bfloat16_weights_still_load(dtype, tmp_path):
    folder = tmp_path / "model"
    damaged_copy("colorize", folder, lambda weights: weights.update({k: v.to(dtype) for k, v in weights.items()}))
    shipped = load_pipeline(TASKS["colorize"].shipped_folder).unet.state_dict()
    loaded = load_pipeline(folder).unet.state_dict()
    assert all(torch.equal(loaded[name], shipped[name].to(dtype).float()) for name in shipped)


# --- a tiny run and another one --------------------------------------------------------------------


def other_run(reference: Path, tmp_path: Path) -> Path:
    """Another run's folder, beside this test's own run."""
    shutil.copytree(reference, tmp_path / "other")
    return tmp_path / "other"


def drop_from_checksums(checkpoint: Path, name: str) -> None:
    """What someone deleting a file and hiding it would do: take it out of checksums.json too."""
    saved = json.loads((checkpoint / MANIFEST).read_text())
    del saved["sha256"][name]
    (checkpoint / MANIFEST).write_text(json.dumps(saved))


# --- 8. only the run's own checkpoint folders are resumed --------------------------------------------


def link_to_other_run(run: Path, other: Path, step: str) -> Path:
    """checkpoints/`step` as a link to the other run's step-4 checkpoint."""
    shutil.rmtree(run / step, ignore_errors=True)
    (run / step).symlink_to(other / STEP_4, target_is_directory=True)
    return run / step


def link_to_a_sibling(run: Path, other: Path, step: str) -> Path:
    (run / step).symlink_to("step-00000002", target_is_directory=True)
    return run / step


def folder_of_links(run: Path, other: Path, step: str) -> Path:
    """A real folder whose every file is a link to the other run's step-4 files (checksums.json too)."""
    (run / step).mkdir()
    for file in (other / STEP_4).iterdir():
        (run / step / file.name).symlink_to(file)
    return run / step


LINKS = [(link_to_other_run, "checkpoints/step-00000099"), (link_to_other_run, STEP_4),
         (folder_of_links, "checkpoints/step-00000099")]


@pytest.mark.parametrize("make, step", LINKS, ids=["link-newer", "link-replaces-step-4", "folder-of-links"])
def test_latest_passes_over_a_checkpoint_that_is_not_the_runs_own(reference, tmp_path, capsys, make, step):
    recipe, run = copy_run(reference, tmp_path)
    other = other_run(reference, tmp_path)
    untouched = snapshot(other)
    entry = make(run, other, step)
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    notice = [line for line in out.splitlines() if "resuming from the previous checkpoint" in line]
    assert len(notice) == 1 and str(entry) in notice[0] and "link" in notice[0], out
    resumed_from = run / (STEP_2 if step == STEP_4 else STEP_4)
    assert f"resumed from {resumed_from} at step" in out, out
    assert snapshot(other) == untouched  # never pruned, replaced or written through the link
    if step == STEP_4:  # trained again from step 2: the run's own step-4 checkpoint replaces the link
        assert not (run / STEP_4).is_symlink()
        assert_resumed_exactly(run, reference)


@pytest.mark.parametrize("make", [link_to_other_run, link_to_a_sibling, folder_of_links], ids=lambda m: m.__name__)
def test_a_checkpoint_that_is_not_the_runs_own_is_refused_by_path(reference, tmp_path, capsys, make):
    recipe, run = copy_run(reference, tmp_path)
    entry = make(run, other_run(reference, tmp_path), "checkpoints/step-00000099")
    before = snapshot(run)
    error = train_fails(capsys, str(recipe), "--set", f"train.resume={entry}")
    assert str(entry) in error and ("link" in error or "not a checkpoint of this run" in error), error
    assert snapshot(run) == before


# --- 11. a missing random state is a damaged checkpoint ---------------------------------------------


def old_format(run: Path) -> None:
    """Checkpoints of a condiff from before checksums: random_states_0.pkl of step 4 deleted."""
    for step in (STEP_2, STEP_4):
        (run / step / MANIFEST).unlink()
    (run / STEP_4 / "random_states_0.pkl").unlink()


def hidden(run: Path) -> None:
    """random_states_0.pkl of step 4 deleted and taken out of its checksums."""
    (run / STEP_4 / "random_states_0.pkl").unlink()
    drop_from_checksums(run / STEP_4, "random_states_0.pkl")


def first_of_two(run: Path) -> None:
    """Step 4 as two processes save it, without the first process's random state."""
    (run / STEP_4 / "random_states_0.pkl").rename(run / STEP_4 / "random_states_1.pkl")
    saved = json.loads((run / STEP_4 / MANIFEST).read_text())
    saved["sha256"]["random_states_1.pkl"] = saved["sha256"].pop("random_states_0.pkl")
    (run / STEP_4 / MANIFEST).write_text(json.dumps(saved))


MISSING = [old_format, hidden, first_of_two]


@pytest.mark.parametrize("remove", MISSING, ids=lambda r: r.__name__)
def test_latest_falls_back_past_a_checkpoint_missing_a_random_state(reference, tmp_path, capsys, remove):
    recipe, run = copy_run(reference, tmp_path)
    remove(run)
    out = train_succeeds(capsys, str(recipe), "--set", "train.resume=latest")
    notice = [line for line in out.splitlines() if "resuming from the previous checkpoint" in line]
    assert len(notice) == 1 and f"{run / STEP_4 / 'random_states_0.pkl'} is missing" in notice[0], out
    assert f"resumed from {run / STEP_2} at step 2" in out
    assert_resumed_exactly(run, reference)


@pytest.mark.parametrize("remove", MISSING, ids=lambda r: r.__name__)
def test_a_checkpoint_missing_a_random_state_named_by_path_says_which_and_what_to_do(reference, tmp_path, capsys,
                                                                                    remove):
    recipe, run = copy_run(reference, tmp_path)
    remove(run)
    before = snapshot(run)
    error = train_fails(capsys, str(recipe), "--set", f"train.resume={run / STEP_4}")
    assert f"{run / STEP_4 / 'random_states_0.pkl'} is missing" in error, error
    assert "'latest'" in error and "num_processes" not in error, error
    assert snapshot(run) == before
