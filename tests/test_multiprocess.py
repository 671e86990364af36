"""`accelerate launch` with 2 CPU processes (gloo): different data per rank, identical weights.

`--multi_gpu` on a machine without GPUs starts torchrun, and accelerate then picks gloo on the CPU
(`--cpu` would start a single process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_two_processes_share_the_work(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(ROOT / "tests" / "multiprocess_train.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [set(json.loads((tmp_path / f"seen-{rank}.json").read_text())) for rank in (0, 1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    weights = [load_file(str(tmp_path / f"weights-{rank}.safetensors")) for rank in (0, 1)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert (tmp_path / "model_index.json").exists()
