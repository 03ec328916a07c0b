"""Number ranges in filters, and filtered searches inside FAISS (an IDSelector) on flat,
HNSW and IVF-PQ indexes: k hits whenever k cases match, close to the exact filtered scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import IndexDir, build_index
from medcap.index.filters import Range, parse_range
from tests.index.vector_encoder import VectorEncoder, make_records

N = 3000
DIM = 32


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IndexDir]:
    root = tmp_path_factory.mktemp("filtered")
    out = {}
    for index_type in ("flat", "hnsw", "ivfpq"):
        cfg = replace_set(DEFAULTS.index, shard_size=1000, index_type=index_type)
        out[index_type] = build_index(
            make_records(N), VectorEncoder(dim=DIM), root / index_type, cfg
        )
    return out


class CountingSearcher:
    """The index's real searcher, counting the filtered searches FAISS answered."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exact = inner.exact
        self.name = inner.name
        self.filtered = 0

    def search_in(self, queries: Any, k: int, rows: Any) -> Any:
        self.filtered += 1
        return self.inner.search_in(queries, k, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _queries(index: IndexDir, n: int = 40) -> np.ndarray:
    gallery = index.embeddings("images")
    rng = np.random.default_rng(5)
    q = gallery[rng.choice(len(gallery), n, replace=False)]
    q = q + 0.3 / np.sqrt(DIM) * rng.standard_normal(q.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _exact(index: IndexDir, queries: np.ndarray, keep: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ index.embeddings("images").T
    rows = np.flatnonzero(keep)
    return [
        rows[np.argsort(-s[rows], kind="stable")[:k]].tolist() for s in scores
    ]  # no ties among random vectors


def test_ranges_parse_with_open_ends_and_refuse_nonsense() -> None:
    assert parse_range("10..30") == Range(10, 30)
    assert parse_range("..30") == Range(None, 30) and parse_range("1.5..") == Range(1.5, None)
    assert parse_range("CT") is None and parse_range("10") is None
    with pytest.raises(InputError, match="low end is above its high end"):
        parse_range("30..10")
    with pytest.raises(InputError, match="at least one end"):
        parse_range("..")


@pytest.mark.parametrize(
    "value",
    ["10..30", Range(10, 30), "..5", "290..", ["..5", "290.."], Range(None, 0.05)],
)
def test_number_ranges_keep_exactly_the_cases_inside(
    indexes: dict[str, IndexDir], value: Any
) -> None:
    index = indexes["flat"]
    sizes = np.array([float(v) for v in index.column("size_cm")])
    wanted = value if isinstance(value, list) else [value]
    keep = np.zeros(N, bool)
    for w in wanted:
        r = w if isinstance(w, Range) else parse_range(w)
        assert r is not None
        keep |= r.mask(sizes)
    assert keep.any() and not keep.all()
    rows = index.matching_rows({"size_cm": value})
    assert rows is not None and rows.tolist() == np.flatnonzero(keep).tolist()
    both = index.matching_rows({"size_cm": value, "modality": "CT"})
    assert both is not None and set(both.tolist()) == set(rows.tolist()) & set(
        np.flatnonzero(np.array(index.column("modality")) == "CT").tolist()
    )


def test_a_range_on_a_text_column_is_a_one_line_error(indexes: dict[str, IndexDir]) -> None:
    with pytest.raises(InputError, match="'modality' holds text values, not numbers"):
        indexes["flat"].matching_rows({"modality": "1..3"})


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivfpq"])
@pytest.mark.parametrize(
    ("where", "min_recall"),
    [
        ({"modality": "CT"}, 0.9),  # a third of the cases
        ({"size_cm": "..20"}, 0.9),  # 201 cases: a selective filter
        ({"size_cm": "0..0.2", "modality": ["CT", "MRI"]}, 1.0),  # 2 cases: fewer than k
    ],
)
def test_filtered_faiss_search_returns_k_matching_hits(
    indexes: dict[str, IndexDir], index_type: str, where: dict[str, Any], min_recall: float
) -> None:
    index = indexes[index_type]
    queries, k = _queries(index), 10
    rows = index.matching_rows(where)
    assert rows is not None
    keep = np.zeros(N, bool)
    keep[rows] = True
    counting = CountingSearcher(index.searcher("images"))
    index._searchers["images"] = counting  # type: ignore[assignment]
    index.filter_scan_max_rows = 0  # every filter searches inside FAISS
    try:
        found = index.search_rows(queries, k, target="images", where=where)
    finally:
        index._searchers["images"] = counting.inner
        index.filter_scan_max_rows = DEFAULTS.index.filter_scan_max_rows
    assert counting.filtered == 1
    exact = _exact(index, queries, keep, k)
    recall = []
    for got, truth in zip(found, exact, strict=True):
        assert len(got) == min(k, len(rows))  # k hits whenever k cases match
        assert all(keep[r] for r, _ in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        recall.append(len({r for r, _ in got} & set(truth)) / len(truth))
    assert np.mean(recall) >= min_recall, np.mean(recall)
    if index_type == "flat":
        assert [[r for r, _ in g] for g in found] == exact


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_filtered_faiss_search_drops_the_excluded_case(
    indexes: dict[str, IndexDir], index_type: str, tmp_path: Path
) -> None:
    index = indexes[index_type]
    own = index.image_ids()[0]  # a CT case
    query = index.embeddings("images")[:1]
    index.filter_scan_max_rows = 0
    try:
        hits = index.search(query, 5, target="images", exclude_ids=[own], where={"modality": "CT"})
    finally:
        index.filter_scan_max_rows = DEFAULTS.index.filter_scan_max_rows
    assert len(hits[0]) == 5 and own not in {h.image_id for h in hits[0]}
    assert {h.metadata["modality"] for h in hits[0]} == {"CT"}
