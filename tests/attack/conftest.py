"""Helpers for the attack tests: crafted pickles, compact huge PNGs, one-line error checks."""

from __future__ import annotations

import os
import shlex
import struct
import zlib
from pathlib import Path

import pytest

from tests.app.conftest import app_index_dir, make_app  # noqa: F401 - the app tests' fixtures


class ShellPayload:
    """Pickles to a call of `os.system`: whoever unpickles it runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def pickled_payload(marker: Path) -> bytes:
    """torch.save bytes of a dict holding a ShellPayload (what a crafted checkpoint holds)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": ShellPayload(marker), "optimizer": ShellPayload(marker)}, buf)
    return buf.getvalue()


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grayscale PNG of zeros, streamed row by row (no full image in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    deflate = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte 0, then the pixels
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 20000 x 20000 PNG (400 Mpx) of a few hundred KB."""
    return write_blank_png(tmp_path_factory.mktemp("huge") / "huge.png", 20_000, 20_000)


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 1, a single `error: ...` line on stderr holding `needles`, no traceback."""
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
