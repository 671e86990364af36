"""Shared fixtures: a tiny recipe that trains in seconds on the CPU."""

import pytest
import torch

from condiff.config import recipe_from_dict

# Tests run on 2 shared cores: more threads only contend.
torch.set_num_threads(1)

TINY = {
    "data": {"size": 32, "random_flip": True},
    "model": {"channels": [32, 32], "attention": [False, True], "layers_per_block": 1},
    "scheduler": {"num_train_timesteps": 50},
    "train": {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "sample_every": 0,
              "sample_num": 2, "sample_steps": 2, "checkpoint_every": 2, "keep_checkpoints": 2,
              "log_every": 1, "tensorboard": False},
}


def tiny_values(output_dir, **train):
    values = {section: dict(keys) for section, keys in TINY.items()}
    values["train"].update(output_dir=str(output_dir), **train)
    return values


@pytest.fixture
def tiny_recipe(tmp_path):
    return recipe_from_dict(tiny_values(tmp_path / "run"))
