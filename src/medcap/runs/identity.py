"""A resumable run's identity: the settings its outputs depend on, recorded when it starts.

A rerun that would resume the run compares its own identity with the recorded one and is
refused, naming the first setting that differs, so a results file or a checkpoint folder
never mixes outputs made with different data, indexes, models or settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medcap.checksums import file_checksum
from medcap.errors import InputError

Identity = dict[str, Any]


def as_json(identity: Mapping[str, Any]) -> Identity:
    """The identity as it reads back from JSON (tuples become lists), for comparison."""
    return dict(json.loads(json.dumps(dict(identity), default=str)))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:28] + "...'"


def first_difference(
    recorded: Mapping[str, Any], identity: Mapping[str, Any], *, ignore: tuple[str, ...] = ()
) -> tuple[str, Any, Any] | None:
    """(setting, recorded value, new value) of the first setting that differs, or None."""
    new = as_json(identity)
    for key, value in new.items():
        if key not in ignore and recorded.get(key) != value:
            return key, recorded.get(key), value
    return None


def refuse_difference(
    recorded: Mapping[str, Any],
    identity: Mapping[str, Any],
    where: Path,
    fix: str,
    *,
    ignore: tuple[str, ...] = (),
) -> None:
    """Raise InputError (one line) when `identity` differs from the `recorded` one."""
    found = first_difference(recorded, identity, ignore=ignore)
    if found is not None:
        key, old, new = found
        raise InputError(f"{where} was started with {key}={_shown(old)}, not {_shown(new)}; {fix}")


def read_identity(path: Path, what: str) -> Identity:
    """The `identity` object recorded in a run file; InputError when it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        identity = data["identity"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is not a readable medcap run file (no identity); it cannot tell which "
            f"settings made {what}: pass --overwrite to start over, or choose another --out"
        ) from None
    if not isinstance(identity, dict):
        raise InputError(f"{path}: its identity is not a JSON object; pass --overwrite")
    return identity


def folder_checksum(folder: Path) -> str:
    """sha256 hex over the names and checksums of a folder's files (e.g. an adapter)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(folder).as_posix()} {file_checksum(path)}\n".encode())
    return digest.hexdigest()
