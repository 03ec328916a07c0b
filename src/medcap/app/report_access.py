"""Which files the Benchmarks page may read: reports under the folders given on the command line.

The page takes a report path from its URL (`?report=PATH`) or a text box, so anyone who can
reach the server chooses it. Only regular files under `medcap app --reports DIR` (default:
the index directory) are read, after resolving every symlink and `..`, and only up to
`AppConfig.max_report_mb`. Every path outside those folders gets the same message, whether
or not it exists, so the page cannot be used to probe the server's disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medcap.errors import InputError

REPORT_JSON = "report.json"


class ReportRefused(InputError):
    """A report path the app will not open (outside the report folders, not a file, too big)."""


@dataclass(frozen=True)
class ReportAccess:
    """The report folders (resolved) and the size cap of each file read from them."""

    roots: tuple[Path, ...]
    max_bytes: int

    @classmethod
    def of(cls, roots: Iterable[str | Path], max_mb: float) -> ReportAccess:
        """Access to `roots` (resolved now), reading files of at most `max_mb` MB."""
        real = (Path(os.path.realpath(Path(r).expanduser())) for r in roots)
        return cls(tuple(dict.fromkeys(real)), int(max_mb * 1024 * 1024))

    def refusal(self) -> ReportRefused:
        """The one message for every path outside the report folders."""
        if not self.roots:
            return ReportRefused("no report folders: start the app with --reports DIR")
        folders = ", ".join(f"`{r}`" for r in self.roots)
        return ReportRefused(
            f"only report.json files under {folders} can be opened; choose one from the list "
            "or start the app with --reports DIR"
        )

    def contains(self, path: Path) -> bool:
        """Whether `path` (already resolved) lies inside one of the report folders."""
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def locate(self, requested: str) -> Path:
        """The resolved report.json a requested path (file or folder) names, checked."""
        text = requested.strip()
        if not text or "\0" in text or not self.roots:
            raise self.refusal()
        given = Path(text).expanduser()
        candidates = [given] if given.is_absolute() else [root / given for root in self.roots]
        inside = []
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if self.contains(real) and real.is_dir():
                real = Path(os.path.realpath(real / REPORT_JSON))
            if self.contains(real):
                if os.path.lexists(real):
                    return self.check(real)
                inside.append(real)
        if inside:  # only paths inside the report folders are said not to exist
            raise ReportRefused(f"{inside[0]} does not exist; write it with `medcap eval ...`")
        raise self.refusal()

    def check(self, real: Path) -> Path:
        """`real` (resolved) if it is a regular file inside the folders, within the size cap."""
        if not self.contains(real):
            raise self.refusal()
        try:
            info = os.stat(real)
        except OSError:
            raise ReportRefused(f"{real} cannot be read") from None
        self._check_stat(real, info)
        return real

    def allows(self, real: Path) -> bool:
        """Whether `check(real)` passes (for the plots and markdown next to a report)."""
        try:
            self.check(real)
        except ReportRefused:
            return False
        return True

    def read_bytes(self, real: Path) -> bytes:
        """The bytes of a checked file, read without following a link or waiting on a FIFO."""
        self.check(real)
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(real, flags)
        except OSError:
            raise ReportRefused(f"{real} cannot be read") from None
        with os.fdopen(fd, "rb") as handle:
            self._check_stat(real, os.fstat(handle.fileno()))  # the file opened, not the name
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise self._too_large(real)
        return data

    def _check_stat(self, real: Path, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise ReportRefused(f"{real} is not a regular file; reports are files")
        if info.st_size > self.max_bytes:
            raise self._too_large(real)

    def _too_large(self, real: Path) -> ReportRefused:
        limit = self.max_bytes / (1024 * 1024)
        return ReportRefused(f"{real} is larger than {limit:g} MB (app.max_report_mb); not read")
