"""The machine a benchmark ran on, in words, stored beside its numbers (results come from several)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def synchronize(device: str) -> None:
    """Waits for queued GPU work, so a host clock read next measures it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def describe(device: str = "cpu") -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    host = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device.startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name(device)} (host: {host})"
    return f"CPU only: {host}"


def add_run_arguments(parser, steps: int, batch: int = 64) -> None:
    """The options every throughput benchmark takes: --steps, --batch, --device and --json."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--json", help="also write the results here")
