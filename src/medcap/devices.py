"""Resolving a `--device` setting to a torch device: one rule for every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcap.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """`auto` -> the GPU if there is one, else the CPU; asking for a GPU that is not there
    (no CUDA, or `cuda:N` past the last GPU) fails with one line instead of a CUDA error later."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} needs a CUDA GPU but none is available; use --device cpu"
        )
    if resolved.type == "cuda":
        check_cuda_ordinal(resolved, torch.cuda.device_count())
    return resolved


def check_cuda_ordinal(device: torch.device, count: int) -> None:
    """Refuse `cuda:N` when only `count` GPUs are visible (N is 0-based)."""
    if device.index is None or device.index < count:
        return
    visible = ", ".join(f"cuda:{i}" for i in range(count)) or "none"
    raise InputError(
        f"device {str(device)!r} does not exist: {count} CUDA GPU(s) visible ({visible}); "
        "use --device cuda, auto, or an index below the GPU count"
    )
