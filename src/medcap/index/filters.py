"""Filtered search: the indexed cases' metadata columns, the rows a filter keeps, and an
exact scan of those rows.

A filter maps a column to the values it accepts: `{"modality": "CT", "split": ["train",
"valid"]}`. Columns are `split` and every metadata column stored with the cases (the
dataset's extra columns: modality, region, ...). Values compare as display strings
(`2.0` matches 2 and "2"; a list cell matches its comma-joined text), so a filter
written by hand and one picked from `values()` behave alike. An empty list accepts
anything; an unknown column is an InputError naming the columns there are.

Number columns also take ranges: `Range(10, 30)`, or the text `"10..30"` (open ends
`"..30"`, `"10.."`), bounds included; cases without a number there never match one.

The kept rows are scored exactly against the stored float16 shard vectors (the vectors
the FAISS index was built from) and ordered as `IndexDir.search` orders its results, so
a filter that keeps every case returns what an unfiltered flat search returns.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


_RANGE = re.compile(r"^\s*([-+]?[0-9.eE+-]*?)\s*\.\.\s*([-+]?[0-9.eE+-]*)\s*$")


@dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high`, both included; None leaves that end open."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for end in (self.low, self.high):
            if end is not None and not math.isfinite(end):
                raise InputError(f"a range takes finite numbers, got {end}")
        if self.low is None and self.high is None:
            raise InputError("a range needs at least one end, e.g. 10..30, ..30 or 10..")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise InputError(f"range {display(self)} is empty: its low end is above its high end")

    def __str__(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        return f"{low}..{high}"

    def mask(self, numbers: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which of `numbers` (NaN: no number) lie in the range."""
        keep = ~np.isnan(numbers)
        if self.low is not None:
            keep &= numbers >= self.low
        if self.high is not None:
            keep &= numbers <= self.high
        return keep


def parse_range(text: str) -> Range | None:
    """`"10..30"`, `"..30"` or `"10.."` -> Range; None when `text` is not a range."""
    match = _RANGE.match(text)
    if match is None:
        return None
    ends: list[float | None] = []
    for part in match.groups():
        try:
            ends.append(float(part) if part else None)
        except ValueError:
            raise InputError(f"range {text!r}: its ends must be numbers, e.g. 10..30") from None
    return Range(ends[0], ends[1])


Accepted = str | Range


def _accepted(name: str, value: Any, kind: ColumnKind | None) -> frozenset[Accepted]:
    """The values a filter entry accepts; "a..b" text is a Range (number columns only)."""
    many = not isinstance(value, str | Range) and isinstance(value, Sequence | set | frozenset)
    out: set[Accepted] = set()
    for v in value if many else [value]:
        found = v if isinstance(v, Range) else parse_range(v) if isinstance(v, str) else None
        if found is not None and kind not in ("number", None):
            raise InputError(
                f"filter column {name!r} holds {kind} values, not numbers: "
                f"a range ({found}) needs a number column"
            )
        out.add(found if found is not None else display(v))
    return frozenset(out)


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
        self._numbers: dict[str, NDArray[np.float64]] = {}
        self._rows: dict[tuple[tuple[str, frozenset[Accepted]], ...], NDArray[np.int64]] = {}
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

    def numbers(self, name: str) -> NDArray[np.float64]:
        """Column `name` as numbers (NaN where a case has none), for ranges."""
        with self._lock:
            found = self._numbers.get(name)
        if found is None:
            found = np.array([_number(v) for v in self.values(name)], dtype=np.float64)
            with self._lock:
                self._numbers[name] = found
        return found

    def _column_keeps(self, name: str, accepted: frozenset[Accepted]) -> NDArray[np.bool_]:
        texts = {a for a in accepted if isinstance(a, str)}
        keep = np.fromiter((v in texts for v in self._values[name]), bool, self.size)
        for wanted in accepted:
            if isinstance(wanted, Range):
                keep |= wanted.mask(self.numbers(name))
        return keep

    def matching_rows(self, where: Filters | None) -> NDArray[np.int64] | None:
        """Rows (ascending) whose columns take one of the accepted values; None: no filter."""
        for name in where or {}:
            self.values(name)  # unknown columns fail before anything is cached
        active = {
            name: _accepted(name, v, self.kinds.get(name, "text" if name == SPLIT else None))
            for name, v in (where or {}).items()
        }
        active = {name: accepted for name, accepted in active.items() if accepted}
        if not active:
            return None
        key = tuple(sorted(active.items(), key=lambda item: item[0]))
        with self._lock:
            cached = self._rows.get(key)
        if cached is not None:
            return cached
        keep = np.ones(self.size, dtype=bool)
        for name, accepted in active.items():
            keep &= self._column_keeps(name, accepted)
        rows = np.flatnonzero(keep).astype(np.int64)
        with self._lock:
            self._rows[key] = rows
            while len(self._rows) > _CACHED_FILTERS:
                self._rows.pop(next(iter(self._rows)))
        return rows


def _number(text: str) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


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
