"""Filtered search: the indexed cases' metadata columns, the rows a filter keeps, and an
exact scan of those rows.

A filter maps a column to the values it accepts: `{"modality": "CT", "split": ["train",
"valid"]}`. Columns are `split` and every metadata column stored with the cases (the
dataset's extra columns: modality, region, ...). Values compare as display strings
(`2.0` matches 2 and "2"; a list cell matches its comma-joined text), so a filter
written by hand and one picked from `values()` behave alike. An empty list accepts
anything; an unknown column is an InputError naming the columns there are.

The kept rows are scored exactly against the stored float16 shard vectors (the vectors
the FAISS index was built from) and ordered as `IndexDir.search` orders its results, so
a filter that keeps every case returns what an unfiltered flat search returns.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medcap.errors import InputError
from medcap.index.ordering import order_candidates

ColumnKind = Literal["text", "flag", "number"]
Filters = Mapping[str, Any]  # column -> one accepted value, or a sequence of them
SPLIT = "split"
_CACHED_FILTERS = 16  # row sets kept per index (the app's sessions reuse a few filters)


def display(value: object) -> str:
    """How a metadata value reads and compares: floats with `g`, lists comma-joined."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(display(v) for v in value)
    return "" if value is None else str(value)


def _kind(value: object) -> ColumnKind | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _accepted(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        return frozenset({display(value)})
    return frozenset(display(v) for v in value)


class CaseColumns:
    """The `split` and metadata columns of an index's rows, as display strings."""

    def __init__(self, splits: Sequence[str | None], extras: Sequence[str | None]) -> None:
        self.size = len(splits)
        raw: dict[str, list[object]] = {}
        kinds: dict[str, set[ColumnKind]] = {}
        for row, text in enumerate(extras):
            for key, value in (json.loads(text) if text else {}).items():
                name = str(key)
                raw.setdefault(name, [None] * self.size)[row] = value
                kind = _kind(value)
                found = kinds.setdefault(name, set())
                if kind is not None:
                    found.add(kind)
        # A column holding more than one kind of value is text; one never filled has no kind.
        self.kinds: dict[str, ColumnKind] = {
            name: next(iter(found)) if len(found) == 1 else "text"
            for name, found in kinds.items()
            if found
        }
        self._values: dict[str, list[str]] = {SPLIT: [s or "" for s in splits]}
        self._values.update({name: [display(v) for v in values] for name, values in raw.items()})
        self._rows: dict[tuple[tuple[str, frozenset[str]], ...], NDArray[np.int64]] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """Every column a filter may name: `split` first, then the metadata columns."""
        return list(self._values)

    def values(self, name: str) -> list[str]:
        """Column `name` in row order ("" where a case has no value)."""
        found = self._values.get(name)
        if found is None:
            raise InputError(
                f"unknown filter column {name!r}; this index has: {', '.join(self.names)}"
            )
        return found

    def matching_rows(self, where: Filters | None) -> NDArray[np.int64] | None:
        """Rows (ascending) whose columns take one of the accepted values; None: no filter."""
        active = {name: _accepted(v) for name, v in (where or {}).items()}
        active = {name: accepted for name, accepted in active.items() if accepted}
        for name in active:
            self.values(name)  # unknown columns fail before anything is cached
        if not active:
            return None
        key = tuple(sorted(active.items(), key=lambda item: item[0]))
        with self._lock:
            cached = self._rows.get(key)
        if cached is not None:
            return cached
        keep = np.ones(self.size, dtype=bool)
        for name, accepted in active.items():
            keep &= np.fromiter((v in accepted for v in self._values[name]), bool, self.size)
        rows = np.flatnonzero(keep).astype(np.int64)
        with self._lock:
            self._rows[key] = rows
            while len(self._rows) > _CACHED_FILTERS:
                self._rows.pop(next(iter(self._rows)))
        return rows


def scan_rows(
    vectors: NDArray[np.float32],
    rows: NDArray[np.int64],
    query: NDArray[np.float32],
    k: int,
) -> list[tuple[int, float]]:
    """Exact top-`k` (row, score) of one query (d,) among `rows`, whose stored vectors
    (len(rows), d) are given; ordered as IndexDir orders results (ties by row)."""
    if rows.size == 0:
        return []
    scores = vectors @ query
    take = min(rows.size, 4 * k + 16)  # slack so ties at the k-th place stay row-ordered
    top = np.argpartition(-scores, take - 1)[:take] if take < rows.size else np.arange(rows.size)
    return order_candidates(rows[top], scores[top].astype(np.float32))[:k]
