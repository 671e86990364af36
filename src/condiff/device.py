"""Which device computes: CUDA when present, else the CPU; an explicit choice wins."""

from __future__ import annotations

from condiff.errors import CondiffError


def pick_device(requested: str | None = None) -> str:
    """CUDA when present, else the CPU; an explicit --device wins."""
    import torch

    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise CondiffError(f"--device {requested}: not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CondiffError(f"--device {requested}: no CUDA GPU is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CondiffError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                               f"numbered from 0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CondiffError(f"--device {requested}: no Apple GPU (MPS) is available; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CondiffError(f"--device {requested}: condiff runs on cpu, cuda, cuda:N or mps")
    return requested
