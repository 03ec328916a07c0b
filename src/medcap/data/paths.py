"""Where the image paths stored in a dataset's table may lead: inside its folder, by default.

A CSV, JSONL or parquet file names image files; a crafted one could name `../../.ssh/id_rsa`
or `/etc/shadow` and have them decoded, thumbnailed and stored in an index. Paths are
resolved (symlinks included) and must stay inside the dataset folder unless
`DataConfig.allow_outside_paths` is set; URLs are never read. A refused row is skipped with
its reason, like any other bad row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
OUTSIDE_HINT = "pass --allow-outside-paths to read it"


class ImagePaths:
    """Resolves stored image paths against a dataset folder and refuses escapes."""

    def __init__(self, root: Path, *, allow_outside: bool) -> None:
        self.root = root
        self.allow_outside = allow_outside
        self._real_root = os.path.realpath(root)
        self._real_dirs: dict[str, str] = {}  # rows share a few folders: resolve each once

    def resolve(self, stored: str, base: Path | None = None) -> tuple[Path | None, str | None]:
        """(path to read, None), or (None, why the row is skipped).

        Relative paths are joined to `base` (default: the dataset folder).
        """
        text = stored.strip()
        if "\0" in text:
            return None, f"image path {text!r} holds a NUL byte; no file has such a name"
        if _URL.match(text):
            return None, f"image path {text!r} is a URL; medcap reads local files only"
        path = Path(text)
        joined = path if path.is_absolute() else (base or self.root) / path
        problem = self.check(joined, text)
        return (None, problem) if problem else (joined, None)

    def check(self, path: Path, stored: str | None = None) -> str | None:
        """Why `path` (as stored: `stored`) may not be read, or None when it may."""
        if self.allow_outside or self.is_inside(path):
            return None
        shown = stored if stored is not None else str(path)
        return f"image path {shown!r} leads outside the dataset folder {self.root}; {OUTSIDE_HINT}"

    def is_inside(self, path: Path) -> bool:
        """Whether `path`, with every symlink and `..` resolved, lies inside the dataset folder."""
        real = self._realpath(os.fspath(path))
        return real == self._real_root or real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def _realpath(self, path: str) -> str:
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            return os.path.realpath(path)
        real_dir = self._real_dirs.get(folder)
        if real_dir is None:
            real_dir = self._real_dirs.setdefault(folder, os.path.realpath(folder or "."))
        candidate = os.path.join(real_dir, name)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate
