"""Checksums of artifact files, streamed in 1 MiB blocks and tagged with their algorithm.

A checksum reads `"<algorithm>:<hex digest>"`, so a file records how it was hashed and
readers can check older entries after the default changes. The default is xxHash's
XXH3-128: it detects accidental damage (bit rot, a partial copy, an edit) as surely as
sha256 and runs near memory speed, while sha256 made opening an 80,000-case index
several times slower (benchmarks/bench_verify.py). It is no defence against someone who
can rewrite the files: they could rewrite the recorded checksums too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ALGORITHM = "xxh3_128"
ALGORITHMS: tuple[str, ...] = ("xxh3_128", "sha256")
_BLOCK = 1 << 20


def _hasher(algorithm: str) -> Any:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh3_128":
        import xxhash

        return xxhash.xxh3_128()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def file_checksum(path: Path, algorithm: str = ALGORITHM) -> str:
    """`"<algorithm>:<hex>"` of the file's bytes, read in blocks (memory stays ~1 MiB)."""
    digest = _hasher(algorithm)
    block = bytearray(_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(block):
            digest.update(view[:size])
    return f"{algorithm}:{digest.hexdigest()}"


def checksum_matches(path: Path, recorded: str) -> bool:
    """Whether `path` still has the checksum `recorded` (in the algorithm it names)."""
    algorithm, _, _ = recorded.partition(":")
    if algorithm not in ALGORITHMS:
        return False
    return file_checksum(path, algorithm) == recorded
