"""Writing a file so no reader ever sees half of it: a temp file beside it, then a rename.

The temp file is `.{name}.<random>.tmp` in the same folder (so the rename stays on one
filesystem and concurrent writers never share one); it is flushed to disk before the
rename and removed if writing fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def temp_files_of(path: Path) -> list[Path]:
    """Temp files an interrupted atomic write of `path` may have left behind."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def write_atomic(path: Path, writer: Callable[[IO[bytes]], object]) -> None:
    """Call `writer(binary file)` on a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON (indent 2, unknown types as str, final newline) atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
