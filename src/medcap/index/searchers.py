"""Search back-ends behind IndexDir: FAISS (CPU or GPU) and an exact torch search on CUDA.

Each answers `search(queries, k) -> (scores, rows)` with rows -1 where fewer than k
exist, and (exact back-ends only) `rows_above(query, threshold)` for tie resolution.
FAISS back-ends also search among given rows only (`search_in`, an IDSelector). A filter
leaves fewer kept vectors per HNSW graph step or IVF list, so efSearch / nprobe grow with
1 / (share of rows kept), up to `FILTER_WIDEN_MAX` times their own value.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from medcap.config import DEFAULTS
from medcap.index import faiss_ops
from medcap.index.half_scan import HalfScan
from medcap.index.search_plan import gpu_can_answer, plan_search
from medcap.index.shards import ShardVectors

LOG = logging.getLogger(__name__)
FILTER_WIDEN_MAX = 8  # most efSearch / nprobe grow for a filtered search (bench_refine.py)


class Searcher(Protocol):
    """What IndexDir needs from a search back-end."""

    exact: bool  # True when results are the true top-k (flat index)
    name: str

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k (scores, rows), each (q, k); rows are -1 past the index size."""
        ...

    def rows_above(
        self, query: NDArray[np.float32], threshold: float
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Every (score, row) with score > threshold for one query (d,) (exact back-ends)."""
        ...

    def search_in(
        self, queries: NDArray[np.float32], k: int, rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        """Top-k among `rows` inside the index search (an IDSelector); None: not supported."""
        ...

    def size(self) -> tuple[int, int]:
        """(vectors held, dimension)."""
        ...


class FaissSearcher:
    """A FAISS index; IVF-PQ candidates are rescored exactly from the float16 shards.

    A flat index on the CPU answers small batches (up to `half_scan_max_queries`) from a
    float16 copy, exactly (medcap.index.half_scan). The copy is made at the second small
    search, so a one-shot `medcap search` never pays for it, and only when it takes at
    most `half_scan_max_mb`. With `gpu` (a CUDA ordinal) the index is copied to that GPU;
    searches asking faiss-gpu for more than its 2,048 results or candidates run on the CPU.
    """

    def __init__(
        self,
        index: Any,
        *,
        index_type: str,
        params: dict[str, Any],
        shard_vectors: ShardVectors | None,
        gpu: int | None = None,
        half_scan_max_queries: int = DEFAULTS.index.half_scan_max_queries,
        half_scan_max_mb: int = DEFAULTS.index.half_scan_max_mb,
    ) -> None:
        faiss_ops.set_search_params(index, params)
        self._cpu = index
        on_gpu = faiss_ops.to_gpu(index, gpu) if gpu is not None else None
        self._index = on_gpu if on_gpu is not None else index
        self.exact = index_type == "flat"
        self.name = f"faiss-gpu:{gpu}" if on_gpu is not None else "faiss-cpu"
        self._rerank = int(params.get("rerank_factor", 0)) if index_type == "ivfpq" else 0
        self._vectors = shard_vectors if self._rerank > 0 else None
        copy_mb = faiss_ops.count(index) * faiss_ops.dimension(index) * 2 / 1e6
        worth_it = self.exact and self._index is index and copy_mb <= half_scan_max_mb
        self._half_scan_max = half_scan_max_queries if worth_it else 0
        self._small_searches = 0
        self._half: HalfScan | None = None

    def _half_scan(self, n_queries: int) -> HalfScan | None:
        if not 0 < n_queries <= self._half_scan_max:
            return None
        self._small_searches += 1
        if self._half is None and self._small_searches >= 2:
            self._half = HalfScan(self._cpu)
        return self._half

    def _for(self, k: int) -> Any:
        """The index that can return `k` results: the GPU copy unless k exceeds its limit."""
        if self._index is not self._cpu and not gpu_can_answer(k):
            LOG.debug("k=%d exceeds faiss-gpu's limit: searching on the CPU", k)
            return self._cpu
        return self._index

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k by inner product (see Searcher)."""
        half = self._half_scan(len(queries))
        found = half.search(queries, k) if half is not None else None
        if found is not None:
            return found
        if self._vectors is None:
            return faiss_ops.search(self._for(k), queries, k)
        n = faiss_ops.count(self._cpu)
        candidates = min(n, k * self._rerank)
        _, cand = faiss_ops.search(self._for(candidates), queries, candidates)
        return self._rescore(queries, cand, k)

    def search_in(
        self, queries: NDArray[np.float32], k: int, rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k among `rows` (see Searcher); on the CPU copy (faiss-gpu takes no selector)."""
        n = faiss_ops.count(self._cpu)
        widen = min(FILTER_WIDEN_MAX, max(1, round(n / max(len(rows), 1))))
        if self._vectors is None:
            return faiss_ops.search_rows_in(self._cpu, queries, k, rows, widen=widen)
        candidates = min(len(rows), k * self._rerank)
        _, cand = faiss_ops.search_rows_in(self._cpu, queries, candidates, rows, widen=widen)
        return self._rescore(queries, cand, k)

    def _rescore(
        self, queries: NDArray[np.float32], cand: NDArray[np.int64], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The top-k of each query's candidates (q, c), scored exactly from the shards."""
        assert self._vectors is not None
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for s in range(0, len(queries), 128):  # bounded memory: 128 x candidates x d floats
            c = cand[s : s + 128]
            valid = c >= 0
            vectors = self._vectors.gather(np.where(valid, c, 0).reshape(-1))
            exact = np.einsum("qcd,qd->qc", vectors.reshape(*c.shape, -1), queries[s : s + 128])
            exact[~valid] = -np.inf
            top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            top_scores = np.take_along_axis(exact, top, axis=1)
            top_rows = np.take_along_axis(c, top, axis=1)
            top_rows[~np.isfinite(top_scores)] = -1
            scores[s : s + 128, : top.shape[1]] = top_scores
            rows[s : s + 128, : top.shape[1]] = top_rows
        return scores, rows

    def rows_above(
        self, query: NDArray[np.float32], threshold: float
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """All rows scoring above `threshold` (flat CPU index: FAISS range search)."""
        return faiss_ops.range_search(self._cpu, query, threshold)

    def size(self) -> tuple[int, int]:
        """(vectors held, dimension)."""
        return faiss_ops.count(self._cpu), faiss_ops.dimension(self._cpu)


class TorchSearcher:
    """Exact search as one matmul + topk on a CUDA device (used when faiss-gpu is absent)."""

    exact = True

    def __init__(self, vectors: NDArray[np.float32], device: str) -> None:
        import torch  # only here: index/ stays free of torch otherwise

        self._torch = torch
        self._device = torch.device(device)
        self._db = torch.from_numpy(vectors).to(self._device)
        self.name = f"torch-{self._device}"

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k by inner product, computed in query blocks on the GPU."""
        torch = self._torch
        out_s, out_r = [], []
        with torch.no_grad():
            for start in range(0, len(queries), 4096):
                q = torch.from_numpy(np.ascontiguousarray(queries[start : start + 4096])).to(
                    self._device
                )
                s, r = torch.topk(q @ self._db.T, k, dim=1)
                out_s.append(s.float().cpu().numpy())
                out_r.append(r.cpu().numpy().astype(np.int64))
        return np.concatenate(out_s), np.concatenate(out_r)

    def rows_above(
        self, query: NDArray[np.float32], threshold: float
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """All rows scoring above `threshold` for one query."""
        torch = self._torch
        with torch.no_grad():
            s = self._db @ torch.from_numpy(np.ascontiguousarray(query)).to(self._device)
            rows = torch.nonzero(s > threshold).flatten()
            return s[rows].float().cpu().numpy(), rows.cpu().numpy().astype(np.int64)

    def search_in(self, queries: NDArray[np.float32], k: int, rows: NDArray[np.int64]) -> None:
        """Not supported: IndexDir scans the kept rows exactly instead."""
        return None

    def size(self) -> tuple[int, int]:
        """(vectors held, dimension)."""
        return int(self._db.shape[0]), int(self._db.shape[1])


def cuda_available(device: str) -> bool:
    """Whether torch sees CUDA; with device "auto" only asked if torch is already imported."""
    if device == "auto" and "torch" not in sys.modules:
        return False  # do not pay torch's import for an index-only process
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_searcher(
    index_path: Path,
    *,
    index_type: str,
    params: dict[str, Any],
    device: str,
    shard_vectors: ShardVectors | None,
    vectors_for_torch: Any = None,
    factory: str = "",
) -> Searcher:
    """Load the index for `device` ("auto", "cpu", "cuda", "cuda:N"), by the rules of
    `medcap.index.search_plan.plan_search`. `vectors_for_torch` is a callable returning
    the (n, d) float32 vectors (for the exact torch search of flat indexes)."""
    if device not in ("auto", "cpu"):
        from medcap.devices import resolve_device

        resolve_device(device)  # an unknown device or a GPU that is not there: one line
    plan = plan_search(
        index_type,
        factory,
        device,
        faiss_gpus=faiss_ops.num_gpus() if device != "cpu" else 0,
        cuda=device != "cpu" and cuda_available(device),
    )
    if plan.note:  # a GPU machine (or a GPU request) that searches this index on the CPU
        level = logging.INFO if device == "auto" else logging.WARNING
        LOG.log(level, "searching %s (%s) on the CPU: %s", index_path.name, factory, plan.note)
    if plan.backend == "torch":
        LOG.debug("exact torch search on cuda:%s", plan.gpu)
        return TorchSearcher(vectors_for_torch(), f"cuda:{plan.gpu}")
    index = faiss_ops.read_index(index_path)
    return FaissSearcher(
        index, index_type=index_type, params=params, shard_vectors=shard_vectors, gpu=plan.gpu
    )
