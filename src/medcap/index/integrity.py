"""Catch a damaged index: its files against the manifest on open, impossible scores on search.

Opening checks that every file the manifest lists exists with its recorded size and, when
verifying, its recorded checksum (medcap.checksums). A search over an index opened without
verification still refuses similarities that no stored unit vector can give, so damage
never passes as an answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medcap.checksums import checksum_matches
from medcap.errors import CorruptArtifactError
from medcap.index.manifest import (
    INDEX_FILES,
    ITEMS_NAME,
    UNVERIFIABLE_VERSION,
    IndexInfo,
    Manifest,
)

# Scores are inner products of unit vectors: outside [-1, 1] by more than float rounding
# (float16 shards re-normalised, float32 sums) they can only come from a damaged file.
SCORE_EPS = 1e-3


def check_files(path: Path, manifest: Manifest, *, verify: bool) -> None:
    """Every listed file exists with its recorded size; with `verify`, its checksum too."""
    required = [*INDEX_FILES.values(), ITEMS_NAME]
    for name in required:
        if name not in manifest.files:
            raise CorruptArtifactError(
                f"{path / 'manifest.json'} does not list {name}; rebuild the index"
            )
    for name, size in manifest.files.items():
        file = path / name
        if not file.exists():
            raise CorruptArtifactError(
                f"{file} is missing; rebuild the index with `medcap index build`"
            )
        actual = file.stat().st_size
        if actual != size:
            raise CorruptArtifactError(
                f"{file} is {actual} bytes but the manifest says {size}: the file is truncated "
                "or was replaced; rebuild the index with `medcap index build`"
            )
    if not verify or manifest.format_version == UNVERIFIABLE_VERSION:
        return
    for name in manifest.files:
        recorded = manifest.checksums.get(name)
        if recorded is None or not checksum_matches(path / name, recorded):
            raise CorruptArtifactError(
                f"{path / name} does not match the checksum in {path / 'manifest.json'}: "
                "the file was altered or damaged; rebuild the index with `medcap index build`"
            )


def check_scores(
    queries: NDArray[np.float32],
    scores: NDArray[np.float32],
    rows: NDArray[np.int64],
    info: IndexInfo,
    file: Path,
) -> None:
    """Refuse scores that no stored unit vector can give (a damaged FAISS `file`).

    |q . v| <= |q| for a unit v: the bound scales with each query's norm, so queries
    that are not normalised are never mistaken for damage.
    """
    if info.type == "ivfpq" and not int(info.params.get("rerank_factor", 0)):
        return  # PQ codes give approximate scores, which may stray past the bound
    bound = np.linalg.norm(queries, axis=1, keepdims=True) * (1 + SCORE_EPS) + SCORE_EPS
    bad = (rows >= 0) & ~(np.abs(scores) <= bound)  # NaN fails the test too
    if bad.any():
        raise CorruptArtifactError(
            f"{file} gave a similarity of {float(scores[bad][0]):.4g}, outside [-1, 1] for "
            "unit vectors: the index is damaged; rebuild it with `medcap index build` "
            "(opening it with verification names the damaged file)"
        )
