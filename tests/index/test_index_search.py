"""Searching an index: exact equals numpy brute force, self-hits, exclusion, clamping, ties."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import IndexDir, build_index
from medcap.index.store import TIE_EPS, order_candidates
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=32)


@pytest.fixture(scope="module")
def vec_index(tmp_path_factory: pytest.TempPathFactory) -> IndexDir:
    out = tmp_path_factory.mktemp("vec") / "idx"
    return build_index(make_records(150), VectorEncoder(dim=24), out, CFG)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    q = rng.standard_normal((n, d)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("target", ["images", "captions"])
def test_exact_search_equals_numpy_brute_force(vec_index: IndexDir, target: str) -> None:
    queries = _unit(np.random.default_rng(1), 40, 24)
    gallery = vec_index.embeddings(target)  # type: ignore[arg-type]
    sims = queries @ gallery.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    ids = vec_index.image_ids()
    found = vec_index.search(queries, 10, target=target)  # type: ignore[arg-type]
    for q, hits in enumerate(found):
        assert [h.image_id for h in hits] == [ids[r] for r in expected[q]]
        np.testing.assert_allclose([h.score for h in hits], sims[q, expected[q]], atol=1e-5)
        assert [h.rank for h in hits] == list(range(1, 11))


def test_every_image_finds_itself_first(vec_index: IndexDir) -> None:
    found = vec_index.search(vec_index.embeddings("images"), 3, target="images")
    for image_id, hits in zip(vec_index.image_ids(), found, strict=True):
        assert hits[0].image_id == image_id
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[1].score < hits[0].score


def test_hits_carry_case_metadata(vec_index: IndexDir) -> None:
    hit = vec_index.search(vec_index.embeddings("images")[5:6], 1, target="images")[0][0]
    record = make_records(150)[5]
    assert (hit.image_id, hit.caption, hit.cuis, hit.split) == (
        record.image_id, record.caption, record.cuis, record.split
    )  # fmt: skip
    assert hit.extra["modality"] == record.extra["modality"]
    assert vec_index.item(record.image_id).caption == record.caption
    with pytest.raises(InputError, match="not in the index"):
        vec_index.item("nope")


def test_exclude_ids_drop_the_query_itself(vec_index: IndexDir) -> None:
    emb = vec_index.embeddings("images")[:4]
    ids = vec_index.image_ids()[:4]
    plain = vec_index.search(emb, 5, target="images")
    excluded = vec_index.search(emb, 5, target="images", exclude_ids=[*ids[:3], None])
    for q in range(3):
        assert len(excluded[q]) == 5
        assert ids[q] not in [h.image_id for h in excluded[q]]
        assert [h.image_id for h in excluded[q]][:4] == [h.image_id for h in plain[q]][1:5]
        assert [h.rank for h in excluded[q]] == [1, 2, 3, 4, 5]
    assert excluded[3] == plain[3]


def test_k_larger_than_index_is_clamped_with_a_note(
    vec_index: IndexDir, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medcap.index.store"):
        found = vec_index.search(vec_index.embeddings("images")[:1], 1000, target="images")
    assert len(found[0]) == len(vec_index) == 150
    assert "k=1000 is larger than the index (150 cases)" in caplog.text
    found = vec_index.search(
        vec_index.embeddings("images")[:1],
        1000,
        target="images",
        exclude_ids=[vec_index.image_ids()[0]],
    )
    assert len(found[0]) == 149


def test_bad_queries_are_input_errors(vec_index: IndexDir) -> None:
    with pytest.raises(InputError, match="dimension 7"):
        vec_index.search(np.ones((1, 7), np.float32), 3, target="images")
    with pytest.raises(InputError, match="unknown search target"):
        vec_index.search(np.ones((1, 24), np.float32), 3, target="text")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k must be"):
        vec_index.search(np.ones((1, 24), np.float32), 0, target="images")


def test_order_candidates_breaks_ties_by_row() -> None:
    rows = np.array([9, 3, 7, 1, 5])
    scores = np.array([0.5, 0.9, 0.5, 0.5 + TIE_EPS / 4, 0.2], dtype=np.float32)
    assert [r for r, _ in order_candidates(rows, scores)] == [3, 1, 7, 9, 5]


def test_tied_duplicates_are_ranked_by_row_across_the_k_boundary(tmp_path: Path) -> None:
    # 12 cases share one vector (like repeated captions); others are distinct.
    keys = [f"k{i}" for i in range(30)]
    for i in (3, 5, 8, 11, 14, 17, 20, 22, 24, 26, 28, 29):
        keys[i] = "dup"
    index = build_index(make_records(30, keys=keys), VectorEncoder(dim=16), tmp_path / "idx", CFG)
    query = index.embeddings("images")[29:30]
    for k in (1, 4, 12, 13):
        hits = index.search(query, k, target="images")[0]
        expected_dups = [3, 5, 8, 11, 14, 17, 20, 22, 24, 26, 28, 29][:k]
        assert [h.image_id for h in hits[: min(k, 12)]] == [f"case_{i:05d}" for i in expected_dups]
        assert all(h.score == pytest.approx(1.0, abs=1e-5) for h in hits[:12])
    hits = index.search(query, 3, target="images", exclude_ids=["case_00003"])[0]
    assert [h.image_id for h in hits] == ["case_00005", "case_00008", "case_00011"]


class _HighRowsFirst:
    """A real exact searcher whose heap keeps the *highest* rows among ties (as a GPU
    top-k may): IndexDir must still return ties by ascending row."""

    exact = True
    name = "high-rows-first"

    def __init__(self, inner: object, n: int) -> None:
        self.inner, self.n = inner, n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.inner.search(queries, self.n)  # type: ignore[attr-defined]
        out_s, out_r = (
            np.empty((len(queries), k), np.float32),
            np.empty((len(queries), k), np.int64),
        )
        for i in range(len(queries)):
            order = sorted(
                range(self.n), key=lambda j: (-round(float(scores[i, j]), 5), -rows[i, j])
            )[:k]
            out_s[i], out_r[i] = scores[i, order], rows[i, order]
        return out_s, out_r

    def rows_above(self, query: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.rows_above(query, threshold)  # type: ignore[attr-defined,no-any-return]

    def size(self) -> tuple[int, int]:
        return self.inner.size()  # type: ignore[attr-defined,no-any-return]


def test_ties_straddling_k_are_resolved_whatever_the_backend_heap_order(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(20)]
    for i in (2, 6, 9, 13, 16, 19):
        keys[i] = "dup"
    index = build_index(make_records(20, keys=keys), VectorEncoder(dim=16), tmp_path / "idx", CFG)
    index._searchers["images"] = _HighRowsFirst(index.searcher("images"), 20)  # type: ignore[assignment]
    hits = index.search(index.embeddings("images")[19:20], 3, target="images")[0]
    assert [h.image_id for h in hits] == ["case_00002", "case_00006", "case_00009"]
