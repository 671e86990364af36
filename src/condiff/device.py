"""Which device computes: CUDA when present, else the CPU; an explicit choice wins."""

from __future__ import annotations

from condiff.errors import CondiffError


def pick_device(requested: str | None = None) -> str:
    """CUDA when present, else the CPU; an explicit --device wins."""
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise CondiffError(f"--device {requested}: no CUDA GPU is available; use --device cpu")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"
