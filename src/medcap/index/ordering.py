"""The order of search results: score descending, ties (within TIE_EPS) by row ascending.

Rows are the order cases were indexed in, so equal scores never depend on FAISS's heap
order; `IndexDir.search` and the filtered search (medcap.index.filters) share this.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

TIE_EPS = 1e-6  # cosine scores closer than this are ties, ordered by row


def order_candidates(
    rows: NDArray[np.int64], scores: NDArray[np.float32]
) -> list[tuple[int, float]]:
    """Sort (row, score) pairs: score descending, ties (within TIE_EPS) by row ascending."""
    if len(scores) < 2 or bool(np.all(scores[:-1] - scores[1:] > TIE_EPS)):
        return list(zip(rows.tolist(), scores.tolist(), strict=True))  # sorted, no ties: as is
    idx = sorted(range(len(rows)), key=lambda i: (-float(scores[i]), int(rows[i])))
    out: list[tuple[int, float]] = []
    i = 0
    while i < len(idx):
        top = float(scores[idx[i]])
        j = i
        while j < len(idx) and top - float(scores[idx[j]]) <= TIE_EPS:
            j += 1
        out.extend(sorted(((int(rows[t]), float(scores[t])) for t in idx[i:j]), key=lambda p: p[0]))
        i = j
    return out


def group_top(ordered: list[tuple[int, float]], pos: int) -> float:
    """Highest score of the tie group holding position `pos`."""
    top = ordered[pos][1]
    for _, score in reversed(ordered[:pos]):
        if score - ordered[pos][1] > TIE_EPS:
            break
        top = max(top, score)
    return top


def straddles(ordered: list[tuple[int, float]], need: int) -> bool:
    """Whether the tie group at position `need - 1` continues past it (k cuts a tie)."""
    return ordered[need - 1][1] - ordered[need][1] <= TIE_EPS
