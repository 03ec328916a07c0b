"""Checkpoint files: open_clip `.pt` plus a JSON sidecar, written atomically; fingerprints.

A checkpoint `X.pt` holds `{"state_dict": ...}` (what `open_clip.load_checkpoint` reads), and
for resumable checkpoints also `"train_state"` (optimizer, scheduler, scaler, RNG, position).
Its sidecar `X.json` holds the architecture, preprocessing, training config, metrics and the
encoder fingerprint, so `load_encoder("X.pt")` needs nothing else. The fingerprint of a
loaded checkpoint is always hashed from the weights loaded, never read from the sidecar;
the hash is cached by the file's path, size and times (`remember_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medcap.atomic import write_atomic, write_json_atomic
from medcap.encoder.spec import SIDECAR_FORMAT, read_json, sidecar_path
from medcap.errors import CorruptArtifactError

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1
FINGERPRINT_DIR = "fingerprints"  # under medcap's cache folder: hashes of loaded weights


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


def checkpoint_key(checkpoint: Path, *companions: Path) -> str | None:
    """What identifies a checkpoint file's bytes without reading them: absolute path, size,
    mtime_ns, and ctime_ns and inode (which `touch -d` cannot set back); None if absent.
    `companions` (a snapshot's open_clip_config.json) are part of the identity too."""
    parts = []
    for path in (checkpoint, *companions):
        try:
            st = path.stat()
        except OSError:
            return None
        parts.append([str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return json.dumps(parts if companions else parts[0])


def _fingerprint_file(key: str) -> Path:
    from medcap.encoder.image_tower import cache_root

    name = hashlib.sha256(key.encode()).hexdigest()[:40]
    return cache_root() / FINGERPRINT_DIR / f"{name}.json"


def remembered_fingerprint(key: str | None) -> str | None:
    """The fingerprint hashed earlier from the weights of the file identified by `key`.

    A sidecar's own "fingerprint" is never trusted: a checkpoint's fingerprint comes only
    from hashing the weights loaded from it (`remember_fingerprint`), so a file replaced
    beside its sidecar gets a new key and is hashed again.
    """
    if key is None:
        return None
    try:
        record = json.loads(_fingerprint_file(key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    fingerprint = record.get("fingerprint")
    return fingerprint if isinstance(fingerprint, str) else None


def remember_fingerprint(key: str, fingerprint: str) -> None:
    """Cache the fingerprint hashed from the weights loaded from the file `key` names."""
    try:
        write_json_atomic(_fingerprint_file(key), {"key": key, "fingerprint": fingerprint})
    except OSError as exc:
        log.info("not caching the checkpoint fingerprint (%s)", exc)


def cached_fingerprint(checkpoint: Path, *companions: Path) -> str | None:
    """The fingerprint of `checkpoint` as it is now, if its weights were hashed before."""
    return remembered_fingerprint(checkpoint_key(checkpoint, *companions))


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
