"""A tiny real CaseEncoder for index tests: vectors derived from ids, no model.

A case's image vector is a seeded random unit vector of its key (`extra["vector_key"]`
when present, else its image_id), so equal keys give identical vectors (ties). Its
caption vector is the image vector plus noise, re-normalised. Records whose image bytes
are b"corrupt" are skipped, as a real encoder skips undecodable images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from medcap.types import ImageRef, Record, Skipped


def unit_vector(key: str, dim: int) -> NDArray[np.float32]:
    """A deterministic random unit vector for `key`."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _key(record: Record) -> str:
    return str(record.extra.get("vector_key", record.image_id))


class VectorEncoder:
    """Deterministic key-derived embeddings; counts the cases it encoded."""

    def __init__(self, dim: int = 16, fingerprint: str = "vec-0001", noise: float = 0.3) -> None:
        self.spec = f"vector-test-encoder:{dim}"
        self.fingerprint = fingerprint
        self.embed_dim = dim
        self.noise = noise
        self.encoded = 0

    def vectors(self, records: Sequence[Record]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(image, caption) vectors (n, d) for records, as encode_cases computes them."""
        if not records:
            empty = np.zeros((0, self.embed_dim), np.float32)
            return empty, empty
        img = np.stack([unit_vector(_key(r), self.embed_dim) for r in records])
        noise = np.stack([unit_vector("caption:" + _key(r), self.embed_dim) for r in records])
        cap = img + self.noise * noise
        cap /= np.linalg.norm(cap, axis=1, keepdims=True)
        return img.astype(np.float32), cap.astype(np.float32)

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]:
        """Embed records; b"corrupt" images are skipped."""
        kept = [r for r in records if r.image.data != b"corrupt"]
        bad = [
            Skipped("test", None, r.image_id, "cannot decode image")
            for r in records
            if r.image.data == b"corrupt"
        ]
        img, cap = self.vectors(kept)
        self.encoded += len(kept)
        return kept, img, cap, bad


def make_records(
    n: int,
    *,
    start: int = 0,
    split: str = "train",
    corrupt: Sequence[int] = (),
    keys: Sequence[str] | None = None,
) -> list[Record]:
    """`n` synthetic cases `case_00000`...; indices in `corrupt` get undecodable images."""
    out = []
    for i in range(start, start + n):
        extra: dict[str, object] = {"modality": ["CT", "MRI", "X-ray"][i % 3], "size_cm": i / 10}
        if keys is not None:
            extra["vector_key"] = keys[i - start]
        out.append(
            Record(
                image_id=f"case_{i:05d}",
                image=ImageRef(path=None, data=b"corrupt" if i in corrupt else b"png"),
                caption=f"caption number {i}",
                cuis=(f"C{i % 7:07d}",),
                split=split,
                extra=extra,
            )
        )
    return out


class Killed(RuntimeError):
    """Raised by `dying` to simulate a build killed mid-way."""


def dying(records: Sequence[Record], after: int) -> Iterator[Record]:
    """Yield the first `after` records, then raise Killed (a crash mid-build)."""
    for i, r in enumerate(records):
        if i == after:
            raise Killed(f"killed after {after} records")
        yield r
