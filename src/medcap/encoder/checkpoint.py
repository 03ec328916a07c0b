"""Checkpoint files: open_clip `.pt` plus a JSON sidecar, written atomically; fingerprints.

A checkpoint `X.pt` holds `{"state_dict": ...}` (what `open_clip.load_checkpoint` reads), and
for resumable checkpoints also `"train_state"` (optimizer, scheduler, scaler, RNG, position).
Its sidecar `X.json` holds the architecture, preprocessing, training config, metrics and the
encoder fingerprint, so `load_encoder("X.pt")` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medcap.atomic import write_atomic, write_json_atomic
from medcap.encoder.spec import SIDECAR_FORMAT, read_json, sidecar_path
from medcap.errors import CorruptArtifactError

SIDECAR_VERSION = 1


def fingerprint_state(
    architecture: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> str:
    """sha256 hex of the architecture config and every tensor (name, dtype, shape, bytes).

    Tensors are hashed in sorted-name order as stored (fp32 for medcap models), so the same
    weights give the same fingerprint on any device.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(architecture.get("config", {}), sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_checkpoint(
    path: Path,
    state_dict: Mapping[str, torch.Tensor],
    sidecar: Mapping[str, Any],
    train_state: Mapping[str, Any] | None = None,
) -> None:
    """Write `path` (.pt) then its sidecar, each atomically. The sidecar is written last,
    so a sidecar always describes a complete weights file."""
    payload: dict[str, Any] = {"state_dict": dict(state_dict)}
    if train_state is not None:
        payload["train_state"] = dict(train_state)
    write_atomic(path, lambda handle: torch.save(payload, handle))
    meta = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "checkpoint": path.name}
    meta.update(sidecar)
    meta["checkpoint_bytes"] = path.stat().st_size
    write_json_atomic(sidecar_path(path), meta)


def read_sidecar(checkpoint: Path) -> dict[str, Any]:
    """Read and check the sidecar of a checkpoint; CorruptArtifactError when damaged."""
    path = sidecar_path(checkpoint)
    data = read_json(path, "checkpoint sidecar")
    arch = data.get("architecture")
    if data.get("format") != SIDECAR_FORMAT or not isinstance(arch, dict) or "config" not in arch:
        raise CorruptArtifactError(
            f"{path}: not a medcap checkpoint sidecar (no format/architecture); "
            "pass a checkpoint written by `medcap train`"
        )
    return data


def cached_fingerprint(checkpoint: Path, sidecar: Mapping[str, Any]) -> str | None:
    """The sidecar's fingerprint, if it still matches the weights file (by size)."""
    fingerprint = sidecar.get("fingerprint")
    if not isinstance(fingerprint, str):
        return None
    try:
        size = checkpoint.stat().st_size
    except OSError:
        return None
    return fingerprint if sidecar.get("checkpoint_bytes") == size else None


# What loading a file that is not a tensor checkpoint raises: torch's weights-only unpickler
# refusing a foreign object (its message advises turning that check off, which would run it), or
# open_clip handling an allowed but foreign value (a list, a number) as a state dict.
FOREIGN_CHECKPOINT_ERRORS = (pickle.UnpicklingError, AttributeError, TypeError, IndexError)


def refused_checkpoint(path: str | Path) -> CorruptArtifactError:
    """The one-line error for a file that is not a medcap/open_clip checkpoint."""
    return CorruptArtifactError(
        f"{path}: not a medcap/open_clip checkpoint, refused; pass a checkpoint written by "
        "`medcap train` or an open_clip state dict"
    )


def load_train_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a resumable checkpoint: (model state dict, train state)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FOREIGN_CHECKPOINT_ERRORS:
        raise refused_checkpoint(path) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CorruptArtifactError(
            f"{path}: cannot read checkpoint ({exc}); delete it to start over"
        ) from None
    if not isinstance(payload, dict) or "train_state" not in payload:
        raise CorruptArtifactError(
            f"{path}: no training state to resume from; start without --resume"
        )
    return payload["state_dict"], payload["train_state"]
