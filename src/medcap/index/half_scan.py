"""Exact top-k for a few queries over a flat index, scanning a float16 copy of it.

One query against a flat index is bound by memory traffic (80,000 x 512 float32 is
164 MB per query). Scanning a float16 copy moves half of that; the best `CANDIDATES`
extra rows are then rescored in float32 from the flat index. Because float16 rounding
moves a score by at most `error_bound`, any row left out of the candidates scores at
most (lowest candidate's float16 score + bound). When the last returned row beats that,
the answer is provably the exact top-k; otherwise `search` returns None and the caller
scans the float32 index.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medcap.index import faiss_ops

CANDIDATES = 128  # rows fetched beyond k from the float16 scan, then rescored exactly
_HALF_UNIT_ROUNDOFF = 2.0**-11  # float16 relative rounding error (normal numbers)
_HALF_SUBNORMAL_STEP = 2.0**-25  # float16 absolute rounding error below 2**-14
_SINGLE_UNIT_ROUNDOFF = 2.0**-24  # float32


class HalfScan:
    """A float16 copy of a flat FAISS index that answers small searches exactly."""

    def __init__(self, flat_index: Any) -> None:
        vectors = faiss_ops.flat_vectors(flat_index)
        self._flat = flat_index
        self._half = faiss_ops.half_precision_index(vectors)
        self._n, self._dim = vectors.shape
        self._max_norm = float(np.sqrt(np.max(np.einsum("nd,nd->n", vectors, vectors))))

    def error_bound(self, query_norm: float) -> float:
        """Largest |float16 score - float32 score| for a query of this norm."""
        d = self._dim
        rounding = _HALF_UNIT_ROUNDOFF * self._max_norm + _HALF_SUBNORMAL_STEP * math.sqrt(d)
        accumulation = 2 * d * _SINGLE_UNIT_ROUNDOFF * self._max_norm  # both dot products
        return float(query_norm * (rounding + accumulation))

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        """Exact top-k (scores, rows) per query, or None when exactness cannot be proven."""
        fetch = k + CANDIDATES
        if fetch >= self._n:
            return None  # the whole index is a candidate: the float32 scan is as cheap
        half_scores, candidates = faiss_ops.search(self._half, queries, fetch)
        out_scores = np.empty((len(queries), k), dtype=np.float32)
        out_rows = np.empty((len(queries), k), dtype=np.int64)
        for i, query in enumerate(queries):
            rows = candidates[i]
            exact = faiss_ops.reconstruct(self._flat, rows) @ query
            top = np.argsort(-exact, kind="stable")[:k]
            bound = self.error_bound(float(np.linalg.norm(query)))
            if not exact[top[-1]] > half_scores[i, -1] + bound:
                return None  # a row outside the candidates might still belong in the top-k
            out_scores[i], out_rows[i] = exact[top], rows[top]
        return out_scores, out_rows
