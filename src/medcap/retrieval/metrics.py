"""Rank-based retrieval metrics (pure numpy): ranks, Recall@K, median and mean rank.

Conventions (the PMC-CLIP / open_clip protocol, see FACTS.md):

- A rank is 0-based: the number of gallery items placed before the query's positive.
- Ties are broken **pessimistically** by default: the positive is placed after every
  non-relevant gallery item whose score is greater than *or equal to* its own. A
  degenerate encoder that gives every item the same score therefore gets the worst rank,
  not a perfect one. `ties="optimistic"` counts only strictly higher scores instead.
- With several relevant items per query (for example every case whose caption is
  identical to the query's), the rank is that of the best-placed relevant item: only
  non-relevant items are counted before it.
- R@K = share of queries with rank < K; median rank = floor(median of 0-based ranks) + 1;
  mean rank = mean of 0-based ranks + 1 (both reported 1-based, as open_clip does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Ties = Literal["pessimistic", "optimistic"]

_CHUNK_ROWS = 1024  # query rows compared at once; bounds the (rows, g) boolean temporaries


def ranks_from_scores(
    scores: NDArray[np.floating],
    positives: NDArray[np.integer] | NDArray[np.bool_],
    *,
    ties: Ties = "pessimistic",
) -> NDArray[np.int64]:
    """0-based rank of each query's positive among the gallery.

    Args:
        scores: (q, g) similarity of each query to each gallery item; higher is better.
        positives: (q,) gallery column of each query's one positive, or a (q, g) boolean
            mask of relevant items (each row needs at least one True).
        ties: how equal scores are ordered against the positive (see the module docstring).

    Returns:
        (q,) int64 ranks in [0, g - 1].
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (q, g), got shape {scores.shape}")
    q, g = scores.shape
    positives = np.asarray(positives)
    if positives.dtype == np.bool_:
        if positives.shape != (q, g):
            raise ValueError(f"relevance mask must be {(q, g)}, got {positives.shape}")
        if q and not positives.any(axis=1).all():
            raise ValueError("every query needs at least one relevant gallery item")
    else:
        if positives.shape != (q,):
            raise ValueError(f"positives must be ({q},), got {positives.shape}")
        if q and (positives.min() < 0 or positives.max() >= g):
            raise ValueError(f"positive indices must lie in [0, {g})")
    ranks = np.empty(q, dtype=np.int64)
    for start in range(0, q, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, q)
        block = scores[start:stop]
        if positives.dtype != np.bool_:
            # one positive: count the items scoring above it (>= counts the positive itself)
            own = block[np.arange(stop - start), positives[start:stop]][:, None]
            if ties == "pessimistic":
                ranks[start:stop] = (block >= own).sum(axis=1) - 1
            else:
                ranks[start:stop] = (block > own).sum(axis=1)
            continue
        relevant = positives[start:stop]
        best = np.where(relevant, block, -np.inf).max(axis=1, keepdims=True)
        before = block >= best if ties == "pessimistic" else block > best
        ranks[start:stop] = (before & ~relevant).sum(axis=1)
    return ranks


def recall_at_k(ranks: NDArray[np.integer], k: int) -> float:
    """Share of queries whose positive ranks in the top `k` (0-based rank < k)."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def median_rank(ranks: NDArray[np.integer]) -> float:
    """Median rank, 1-based: floor(median of 0-based ranks) + 1."""
    ranks = np.asarray(ranks)
    return float(np.floor(np.median(ranks)) + 1) if ranks.size else float("nan")


def mean_rank(ranks: NDArray[np.integer]) -> float:
    """Mean rank, 1-based: mean of 0-based ranks + 1."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks) + 1) if ranks.size else float("nan")


def summarize_ranks(ranks: NDArray[np.integer], ks: Iterable[int]) -> dict[str, float]:
    """`R@k` for each k (as fractions in [0, 1]), `median_rank`, `mean_rank` and `n`."""
    summary = {f"R@{k}": recall_at_k(ranks, k) for k in ks}
    summary["median_rank"] = median_rank(ranks)
    summary["mean_rank"] = mean_rank(ranks)
    summary["n"] = float(np.asarray(ranks).size)
    return summary


def same_value_mask(
    query_keys: NDArray[np.integer], gallery_keys: NDArray[np.integer]
) -> NDArray[np.bool_]:
    """(q, g) mask of gallery items sharing the query's key (e.g. an identical caption)."""
    mask: NDArray[np.bool_] = np.asarray(query_keys)[:, None] == np.asarray(gallery_keys)[None, :]
    return mask
