"""Search on CUDA: the exact torch search, faiss-gpu (when installed), index search with
device auto against the CPU, and fast-scan IVF-PQ indexes that stay on the CPU (and say so)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.index import build_index, faiss_ops, open_index
from medcap.index.search_plan import GPU_MAX_K
from medcap.index.searchers import FaissSearcher, TorchSearcher
from tests.index.vector_encoder import VectorEncoder, make_records

pytestmark = pytest.mark.gpu


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_torch_search_is_exact() -> None:
    gallery, queries = _unit(5000, 64, 1), _unit(300, 64, 2)
    scores, rows = TorchSearcher(gallery, "cuda:0").search(queries, 10)
    sims = queries @ gallery.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    assert (rows == expected).mean() > 0.999  # float32 on both sides; ties are measure-zero
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, axis=1), atol=1e-5)


@pytest.mark.skipif(faiss_ops.num_gpus() == 0, reason="faiss-gpu is not installed")
def test_faiss_gpu_matches_faiss_cpu_and_shares_resources() -> None:
    gallery, queries = _unit(GPU_MAX_K + 500, 32, 3), _unit(50, 32, 4)
    cpu = faiss_ops.new_index("Flat", 32)
    faiss_ops.add_vectors(cpu, gallery)
    images = FaissSearcher(cpu, index_type="flat", params={}, shard_vectors=None, gpu=0)
    captions = FaissSearcher(cpu, index_type="flat", params={}, shard_vectors=None, gpu=0)
    assert images.name == captions.name == "faiss-gpu:0"
    assert len(faiss_ops._GPU_RESOURCES) == 1  # one StandardGpuResources for the process
    _, rows = images.search(queries, 10)
    _, ref = faiss_ops.search(cpu, queries, 10)
    assert (rows == ref).mean() > 0.999
    _, wide = images.search(queries, GPU_MAX_K + 1)  # past faiss-gpu's k: the CPU answers
    assert wide.shape == (50, GPU_MAX_K + 1) and (wide[:, :10] == ref).mean() > 0.999


def test_index_search_auto_equals_cpu(tmp_path: Path) -> None:
    cfg = replace_set(DEFAULTS.index, shard_size=64)
    build_index(make_records(200), VectorEncoder(dim=32), tmp_path / "idx", cfg)
    queries = _unit(40, 32, 5)
    on_gpu = open_index(tmp_path / "idx", device="auto")
    on_cpu = open_index(tmp_path / "idx", device="cpu")
    for target in ("images", "captions"):
        assert on_gpu.searcher(target).name != "faiss-cpu"  # type: ignore[arg-type]
        gpu_hits = on_gpu.search(queries, 7, target=target)  # type: ignore[arg-type]
        cpu_hits = on_cpu.search(queries, 7, target=target)  # type: ignore[arg-type]
        assert [[h.image_id for h in q] for q in gpu_hits] == [
            [h.image_id for h in q] for q in cpu_hits
        ]


def test_fast_scan_ivfpq_stays_on_the_cpu_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = replace_set(DEFAULTS.index, shard_size=128, index_type="ivfpq")
    build_index(make_records(400), VectorEncoder(dim=32), tmp_path / "ivf", cfg)
    index = open_index(tmp_path / "ivf", device="cuda")
    assert "x4fs" in index.manifest.index.factory
    with caplog.at_level(logging.WARNING, logger="medcap.index.searchers"):
        searcher = index.searcher("images")
    assert searcher.name == "faiss-cpu"
    assert "fast-scan" in caplog.text and "on the CPU" in caplog.text
