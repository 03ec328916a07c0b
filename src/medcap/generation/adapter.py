"""The JSON sidecar of a medcap LoRA adapter: base model, backend, template, k, LoRA config."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcap.atomic import write_text_atomic
from medcap.errors import CorruptArtifactError, InputError

ADAPTER_INFO_FILE = "medcap_adapter.json"
ADAPTER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class AdapterInfo:
    """What a generator adapter was trained for, so captioning can use the same setup."""

    backend: str  # the registered backend it was trained for
    base_model: str  # model id or path of the frozen base model
    template: str
    k: int
    lora: dict[str, Any] = field(default_factory=dict)  # r, alpha, dropout, target_modules
    steps: int = 0
    final_loss: float | None = None
    created_at: str = ""
    format_version: int = ADAPTER_FORMAT_VERSION


def write_adapter_info(info: AdapterInfo, adapter_dir: str | Path) -> Path:
    """Write the sidecar into `adapter_dir` (atomically: temp file, then rename)."""
    path = Path(adapter_dir) / ADAPTER_INFO_FILE
    write_text_atomic(path, json.dumps(asdict(info), indent=2) + "\n")
    return path


def read_adapter_info(adapter_dir: str | Path) -> AdapterInfo | None:
    """Read the sidecar of an adapter directory; None for adapters trained elsewhere."""
    directory = Path(adapter_dir).expanduser()
    if not directory.is_dir():
        raise InputError(f"adapter directory {directory} does not exist; pass --adapter DIR")
    path = directory / ADAPTER_INFO_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return AdapterInfo(**raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise CorruptArtifactError(
            f"{path} is damaged ({exc}); retrain the adapter or delete the file"
        ) from None
