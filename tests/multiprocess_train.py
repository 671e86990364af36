"""Run by test_multiprocess.py under `accelerate launch --num_processes 2`: a tiny run that records,
per rank, which dataset items it saw and the weights it ended with."""

import json
import os
import sys

from safetensors.torch import save_file

from condiff.config import recipe_from_dict
from condiff.training.from_recipe import build_parts
from condiff.training.trainer import Trainer
from tests.conftest import tiny_values


class RecordingDataset:
    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        self.seen.append(int(index))
        return self.inner[index]


def main(output_dir: str) -> None:
    recipe = recipe_from_dict(tiny_values(output_dir, max_steps=3, checkpoint_every=0))
    dataset, unet, scheduler, _, _ = build_parts(recipe)
    recording = RecordingDataset(dataset)
    Trainer(recipe, unet, scheduler, recording).train()
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(output_dir, f"seen-{rank}.json"), "w") as handle:
        json.dump(recording.seen, handle)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
              os.path.join(output_dir, f"weights-{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
