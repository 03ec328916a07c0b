"""Filtered search in the index: columns, matching rows, and exact top-k among the kept rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import IndexDir, build_index
from medcap.index.filters import CaseColumns, display
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=32)
N = 120


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> IndexDir:
    records = make_records(N)
    # a few valid cases, and equal vectors (ties) across modalities
    records = [
        dataclasses.replace(r, split="valid" if i % 10 == 0 else "train")
        for i, r in enumerate(records)
    ]
    keys = [f"k{i % 40}" for i in range(N)]
    records = [
        dataclasses.replace(r, extra={**r.extra, "vector_key": key})
        for r, key in zip(records, keys, strict=True)
    ]
    return build_index(records, VectorEncoder(dim=16), tmp_path_factory.mktemp("f") / "idx", CFG)


def _brute_force(index: IndexDir, query: np.ndarray, keep: np.ndarray, k: int) -> list[str]:
    """Filter the full exact ranking (score descending, ties by row)."""
    scores = index.vectors(np.arange(N), "images") @ query
    order = sorted(np.flatnonzero(keep).tolist(), key=lambda r: (-float(scores[r]), r))
    ids = index.image_ids()
    return [ids[r] for r in order[:k]]


def test_columns_hold_split_and_metadata(index: IndexDir) -> None:
    columns = index.columns
    assert columns.names[0] == "split" and {"modality", "size_cm", "vector_key"} <= set(
        columns.names
    )
    assert index.column("modality")[:3] == ["CT", "MRI", "X-ray"]
    assert index.column("size_cm")[:3] == ["0", "0.1", "0.2"]  # numbers read as display strings
    assert columns.kinds["modality"] == "text" and columns.kinds["size_cm"] == "number"


@pytest.mark.parametrize(
    "where",
    [
        {"modality": "CT"},
        {"modality": ["CT", "X-ray"]},
        {"modality": "MRI", "split": "valid"},
        {"size_cm": 0.3},  # a number matches its display string
        {"modality": []},  # an empty choice accepts anything
    ],
)
def test_filtered_search_equals_filtering_the_full_ranking(
    index: IndexDir, where: dict[str, object]
) -> None:
    query = index.vectors(np.array([7]), "images")[0]
    columns = {name: index.column(name) for name in where}
    accepted = {
        name: {display(v) for v in (value if isinstance(value, list) else [value])}
        for name, value in where.items()
    }
    keep = np.array(
        [all(not accepted[n] or columns[n][r] in accepted[n] for n in where) for r in range(N)]
    )
    k = 6
    hits = index.search(query[None, :], k, target="images", where=where)[0]
    assert [h.image_id for h in hits] == _brute_force(index, query, keep, k)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    for name, values in accepted.items():
        assert all(not values or display(h.metadata.get(name, h.split)) in values for h in hits)


def test_filter_keeping_everything_equals_the_unfiltered_search(index: IndexDir) -> None:
    queries = index.vectors(np.arange(0, 30, 3), "captions")
    for target in ("images", "captions"):
        plain = index.search(queries, 9, target=target)  # type: ignore[arg-type]
        everything = index.search(
            queries,
            9,
            target=target,
            where={"split": ["train", "valid"]},  # type: ignore[arg-type]
        )
        assert [[h.image_id for h in hs] for hs in everything] == [
            [h.image_id for h in hs] for hs in plain
        ]


def test_filters_exclude_the_query_case_and_may_return_fewer(index: IndexDir) -> None:
    own = index.image_ids()[10]  # a valid case
    query = index.vectors(np.array([10]), "images")
    hits = index.search(query, 50, target="images", exclude_ids=[own], where={"split": "valid"})[0]
    assert own not in [h.image_id for h in hits] and len(hits) == N // 10 - 1
    assert index.search(query, 5, target="images", where={"modality": "PET"}) == [[]]


def test_unknown_columns_are_one_line_errors(index: IndexDir) -> None:
    query = index.vectors(np.array([0]), "images")
    with pytest.raises(InputError, match=r"unknown filter column 'organ'; this index has: split"):
        index.search(query, 3, target="images", where={"organ": "lung"})
    with pytest.raises(InputError, match="unknown filter column"):
        CaseColumns(["train"], ['{"a": 1}']).matching_rows({"b": 1})


def test_matching_rows_are_cached_and_thread_safe(index: IndexDir) -> None:
    from concurrent.futures import ThreadPoolExecutor

    where = {"modality": "CT"}
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: index.matching_rows(where), range(16)))
    assert all(rows is found[0] for rows in found)
    assert index.matching_rows({}) is None and index.matching_rows(None) is None
