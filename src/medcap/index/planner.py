"""Choose a FAISS index type and its parameters from the vector count and a memory budget.

`auto` follows autofaiss's idea: an exact flat index while it is small enough, then
HNSW (graph over full vectors) while it fits the budget, then IVF-PQ with the largest
code that fits. Pure arithmetic: no FAISS import, so it is cheap to test and to explain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from medcap.config import IndexConfig
from medcap.errors import InputError

INDEX_TYPES: tuple[str, ...] = ("auto", "flat", "hnsw", "ivfpq")
N_INDEXES = 2  # one index of image vectors and one of caption vectors share the budget
_MIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per centroid
MIN_IVFPQ_VECTORS = 256  # fewer vectors cannot train IVF-PQ usefully: such a request gets flat


@dataclass(frozen=True)
class IndexPlan:
    """What to build: a FAISS factory string, search parameters and why."""

    type: str  # flat | hnsw | ivfpq
    factory: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    requested: str = "auto"
    train_size: int = 0  # vectors sampled to train the index (0: no training needed)
    bytes_per_index: int = 0  # estimated RAM of one loaded index


def estimate_flat_bytes(n: int, dim: int) -> int:
    """RAM of a flat float32 index: the vectors themselves."""
    return n * dim * 4


def estimate_hnsw_bytes(n: int, dim: int, m: int) -> int:
    """RAM of an HNSW{m} index: vectors, 2m level-0 links, upper levels (~1/m of nodes), ids."""
    links = 2 * m * 4 + math.ceil(m * 4 / max(m - 1, 1))
    return n * (dim * 4 + links + 16)


def _ivf_nlist(n: int) -> int:
    """Inverted lists: a power of two near sqrt(n), with enough training points per list."""
    nlist = 1 << round(math.log2(max(math.sqrt(n), 1)))
    return max(1, min(nlist, n // _MIN_POINTS_PER_CENTROID, 65536))


def estimate_ivfpq_bytes(n: int, dim: int, nlist: int, m: int) -> int:
    """RAM of IVF{nlist},PQ{m}x4fs: m/2-byte codes + 8-byte ids per vector, centroids."""
    return n * (math.ceil(m / 2) + 8) + nlist * dim * 4 + dim * 16 * 4


def _pq_candidates(dim: int) -> list[int]:
    """Sub-quantizer counts to try, largest first (each divides dim, >= 2 dims each)."""
    return [m for m in (128, 64, 32, 16, 8, 4, 2, 1) if 2 * m <= max(dim, 2) and dim % m == 0]


def _plan_flat(n: int, dim: int, requested: str, reason: str) -> IndexPlan:
    return IndexPlan(
        type="flat",
        factory="Flat",
        params={},
        reason=reason,
        requested=requested,
        bytes_per_index=estimate_flat_bytes(n, dim),
    )


def _plan_hnsw(n: int, dim: int, cfg: IndexConfig, requested: str, reason: str) -> IndexPlan:
    return IndexPlan(
        type="hnsw",
        factory=f"HNSW{cfg.hnsw_m}",
        params={"efSearch": cfg.hnsw_ef_search},
        reason=reason,
        requested=requested,
        bytes_per_index=estimate_hnsw_bytes(n, dim, cfg.hnsw_m),
    )


def _plan_ivfpq(n: int, dim: int, cfg: IndexConfig, requested: str, reason: str) -> IndexPlan:
    # 4-bit fast-scan PQ: 16 centroids per sub-quantizer train quickly and scan fast;
    # its coarse scores only pick candidates, which are rescored exactly from the
    # float16 shards (rerank_factor), so a short code loses little recall.
    budget = cfg.memory_budget_gb * 1e9 / N_INDEXES
    nlist = _ivf_nlist(n)
    train_size = min(n, max(64 * nlist, 16 * _MIN_POINTS_PER_CENTROID * 4))
    candidates = _pq_candidates(dim)
    m = candidates[-1]
    fits = False
    for cand in candidates:
        if estimate_ivfpq_bytes(n, dim, nlist, cand) <= budget:
            m, fits = cand, True
            break
    note = "" if fits else f"; even the smallest code ({m} sub-quantizers) exceeds the budget"
    return IndexPlan(
        type="ivfpq",
        factory=f"IVF{nlist},PQ{m}x4fs",
        params={"nprobe": min(cfg.ivf_nprobe, nlist), "rerank_factor": cfg.ivf_rerank_factor},
        reason=reason
        + f"; 4-bit PQ code of {m} sub-quantizers, rescored from float16 shards{note}",
        requested=requested,
        train_size=train_size,
        bytes_per_index=estimate_ivfpq_bytes(n, dim, nlist, m),
    )


def plan_index(n: int, dim: int, cfg: IndexConfig) -> IndexPlan:
    """Pick the index for `n` vectors of `dim` floats under `cfg` (type, budget, params)."""
    requested = cfg.index_type
    if requested not in INDEX_TYPES:
        raise InputError(f"unknown index type {requested!r}; valid: {', '.join(INDEX_TYPES)}")
    if n < 1:
        raise InputError("no vectors to index: the dataset split yielded no usable cases")
    gb = cfg.memory_budget_gb
    budget = gb * 1e9 / N_INDEXES
    if requested == "flat":
        return _plan_flat(n, dim, requested, "requested")
    if requested == "hnsw":
        return _plan_hnsw(n, dim, cfg, requested, "requested")
    if requested == "ivfpq":
        if n < MIN_IVFPQ_VECTORS:
            return _plan_flat(
                n,
                dim,
                requested,
                f"ivfpq requested but {n} vectors < {MIN_IVFPQ_VECTORS}: exact flat",
            )
        return _plan_ivfpq(n, dim, cfg, requested, "requested")
    flat = estimate_flat_bytes(n, dim)
    if n <= cfg.flat_max_vectors and flat <= budget:
        return _plan_flat(
            n,
            dim,
            requested,
            f"auto: {n} vectors <= flat_max_vectors {cfg.flat_max_vectors} and "
            f"{N_INDEXES} flat indexes ({N_INDEXES * flat / 1e9:.2f} GB) fit the "
            f"{gb:g} GB budget: exact search",
        )
    why = (
        f"{n} vectors > flat_max_vectors {cfg.flat_max_vectors}"
        if n > cfg.flat_max_vectors
        else f"{N_INDEXES} flat indexes ({N_INDEXES * flat / 1e9:.2f} GB) exceed the "
        f"{gb:g} GB budget"
    )
    hnsw = estimate_hnsw_bytes(n, dim, cfg.hnsw_m)
    if hnsw <= budget:
        return _plan_hnsw(
            n,
            dim,
            cfg,
            requested,
            f"auto: {why}; {N_INDEXES} HNSW{cfg.hnsw_m} indexes "
            f"({N_INDEXES * hnsw / 1e9:.2f} GB) fit the {gb:g} GB budget",
        )
    return _plan_ivfpq(
        n,
        dim,
        cfg,
        requested,
        f"auto: {why}; {N_INDEXES} HNSW{cfg.hnsw_m} indexes ({N_INDEXES * hnsw / 1e9:.2f} GB) "
        f"exceed the {gb:g} GB budget, so IVF-PQ",
    )
