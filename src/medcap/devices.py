"""Resolving a `--device` setting to a torch device: one rule for every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcap.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """`auto` -> the GPU if there is one, else the CPU; asking for CUDA without it fails."""
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
    return resolved
