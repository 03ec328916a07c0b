"""The float16 scan for small batches: exact top-k, or an honest refusal."""

from __future__ import annotations

import numpy as np
import pytest

from medcap.index import faiss_ops
from medcap.index.half_scan import HalfScan
from medcap.index.searchers import FaissSearcher


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _flat(vectors: np.ndarray) -> object:
    index = faiss_ops.new_index("Flat", vectors.shape[1])
    faiss_ops.add_vectors(index, vectors)
    return index


def _brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("clustered", [False, True])
def test_half_scan_equals_brute_force(clustered: bool) -> None:
    rng = np.random.default_rng(3)
    if clustered:  # 30 tight clusters: many close scores near the top
        centres = rng.standard_normal((30, 48))
        vectors = _unit(centres[rng.integers(0, 30, 4000)] + 0.3 * rng.standard_normal((4000, 48)))
    else:
        vectors = _unit(rng.standard_normal((4000, 48)))
    queries = _unit(rng.standard_normal((60, 48)))
    scan = HalfScan(_flat(vectors))
    answered = 0
    for q in queries:
        found = scan.search(q[None], 10)
        if found is None:
            continue
        answered += 1
        scores, rows = found
        assert rows[0].tolist() == _brute_force(vectors, q[None], 10)[0].tolist()
        np.testing.assert_allclose(scores[0], vectors[rows[0]] @ q, atol=1e-6)
    assert answered >= 50  # the bound is tight enough to answer almost every query


def test_half_scan_refuses_when_float16_cannot_separate_the_top_k() -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal(32)
    # 500 vectors within 1e-5 of each other: their float16 scores are indistinguishable.
    vectors = _unit(base + 1e-5 * rng.standard_normal((500, 32)))
    vectors = np.concatenate([vectors, _unit(rng.standard_normal((1000, 32)))])
    assert HalfScan(_flat(vectors)).search(_unit(base[None]), 5) is None


def test_error_bound_covers_float16_rounding() -> None:
    rng = np.random.default_rng(5)
    vectors = _unit(rng.standard_normal((2000, 64)))
    queries = _unit(rng.standard_normal((20, 64)))
    scan = HalfScan(_flat(vectors))
    worst = np.abs(queries @ vectors.astype(np.float16).astype(np.float32).T - queries @ vectors.T)
    assert worst.max() <= scan.error_bound(1.0)
    assert scan.error_bound(1.0) < 1e-3  # and is not uselessly loose


def test_searcher_uses_the_copy_from_the_second_small_search_and_stays_exact() -> None:
    rng = np.random.default_rng(6)
    vectors = _unit(rng.standard_normal((3000, 32)))
    base = vectors[7]
    near = _unit(base + 1e-5 * rng.standard_normal((300, 32)))  # forces a refusal
    vectors = np.concatenate([vectors, near])
    searcher = FaissSearcher(
        _flat(vectors), index_type="flat", params={}, shard_vectors=None, half_scan_max_queries=2
    )
    queries = [_unit(rng.standard_normal((1, 32))), _unit(rng.standard_normal((2, 32))), base[None]]
    for n, q in enumerate(queries):
        scores, _ = searcher.search(q, 8)  # near-duplicates tie: compare scores, not rows
        expected = -np.sort(-(q @ vectors.T), axis=1)[:, :8]
        np.testing.assert_allclose(scores, expected, atol=1e-6)
        assert (searcher._half is not None) == (n >= 1)
    big = _unit(rng.standard_normal((3, 32)))  # above half_scan_max_queries: the float32 scan
    assert searcher.search(big, 8)[1].tolist() == _brute_force(vectors, big, 8).tolist()
