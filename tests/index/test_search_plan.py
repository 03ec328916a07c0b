"""Which back-end searches an index on a device, and faiss-gpu's k limit."""

from __future__ import annotations

import numpy as np
import pytest

from medcap.index import faiss_ops
from medcap.index.search_plan import (
    GPU_MAX_K,
    describe_search,
    faiss_gpu_gap,
    gpu_can_answer,
    gpu_ordinal,
    plan_search,
)
from medcap.index.searchers import FaissSearcher

X4FS = "IVF1024,PQ64x4fs"


@pytest.mark.parametrize(
    ("index_type", "factory", "device", "gpus", "cuda", "backend", "gpu"),
    [
        ("flat", "Flat", "cpu", 2, True, "faiss-cpu", None),
        ("flat", "Flat", "auto", 1, True, "faiss-gpu", 0),
        ("flat", "Flat", "cuda:1", 2, True, "faiss-gpu", 1),
        ("flat", "Flat", "cuda:1", 0, True, "torch", 1),  # no faiss-gpu: exact torch search
        ("flat", "Flat", "auto", 0, False, "faiss-cpu", None),
        ("ivfpq", X4FS, "cuda", 1, True, "faiss-cpu", None),  # no GPU fast-scan PQ
        ("hnsw", "HNSW32", "auto", 1, True, "faiss-cpu", None),  # no GPU HNSW
        ("ivfpq", "IVF256,PQ16", "cuda:0", 1, True, "faiss-gpu", 0),
    ],
)
def test_plan_search(
    index_type: str, factory: str, device: str, gpus: int, cuda: bool, backend: str, gpu: int | None
) -> None:
    plan = plan_search(index_type, factory, device, faiss_gpus=gpus, cuda=cuda)
    assert (plan.backend, plan.gpu) == (backend, gpu)
    gap = faiss_gpu_gap(index_type, factory)
    if backend == "faiss-cpu" and device != "cpu" and (gpus or cuda):
        assert plan.note and (gap in plan.note if gap else "not installed" in plan.note)
    else:
        assert plan.note == ""


def test_gaps_and_ordinals() -> None:
    assert "fast-scan" in faiss_gpu_gap("ivfpq", X4FS)
    assert "HNSW" in faiss_gpu_gap("hnsw", "HNSW32")
    assert faiss_gpu_gap("flat", "Flat") == "" == faiss_gpu_gap("ivfpq", "IVF256,PQ16")
    assert (gpu_ordinal("cuda:3"), gpu_ordinal("cuda"), gpu_ordinal("auto")) == (3, 0, 0)


def test_index_info_line_says_where_searches_run() -> None:
    assert describe_search("flat", "Flat", faiss_gpus=0).startswith(
        "on a GPU: faiss-gpu or exact torch matmul"
    )
    line = describe_search("ivfpq", X4FS, faiss_gpus=1)
    assert line.startswith("CPU only: faiss-gpu has no 4-bit fast-scan PQ")
    assert "faiss-gpu sees 1 GPU(s)" in line
    assert describe_search("hnsw", "HNSW32", faiss_gpus=0).startswith("CPU only")


def test_searches_past_faiss_gpus_k_limit_go_to_the_cpu_index() -> None:
    """The searcher keeps a CPU index beside the GPU copy; k (or the rerank candidates) above
    2,048 is answered by the CPU one. A second CPU index with other vectors stands in for the
    GPU copy here, so the answer shows which index served it."""
    assert gpu_can_answer(GPU_MAX_K) and not gpu_can_answer(GPU_MAX_K + 1)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((GPU_MAX_K + 100, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cpu = faiss_ops.new_index("Flat", 8)
    faiss_ops.add_vectors(cpu, vectors)
    stand_in = faiss_ops.new_index("Flat", 8)
    faiss_ops.add_vectors(stand_in, -vectors)  # opposite scores: its top-1 is cpu's last
    searcher = FaissSearcher(
        cpu, index_type="flat", params={}, shard_vectors=None, half_scan_max_queries=0
    )
    searcher._index = stand_in
    query = vectors[:1]
    _, small = searcher.search(query, 5)
    _, large = searcher.search(query, GPU_MAX_K + 1)
    assert small[0, 0] != 0  # the stand-in answered k <= 2,048
    assert large[0, 0] == 0  # the CPU index answered k > 2,048 (the query is row 0)
