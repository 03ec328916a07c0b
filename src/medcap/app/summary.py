"""What the dataset page shows: counts per split, metadata distributions, caption lengths."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from medcap.app.cases import CaseTable


@dataclass(frozen=True)
class DatasetSummary:
    """Counts over an index's cases."""

    total: int
    per_split: dict[str, int]
    per_value: dict[str, dict[str, int]]  # metadata column -> value -> cases, most common first
    caption_words: NDArray[np.int64]  # (n,) words per caption
    distinct_cuis: int
    cases_without_cuis: int

    def caption_histogram(self, bins: int = 30) -> tuple[list[str], list[int]]:
        """Caption length histogram: bin labels ("12-15 words") and case counts."""
        if self.caption_words.size == 0:
            return [], []
        low, top = int(self.caption_words.min()), int(self.caption_words.max())
        span = top + 1 - low
        edges = np.unique(np.linspace(low, top + 1, min(bins, span) + 1).round().astype(int))
        counts, _ = np.histogram(self.caption_words, bins=edges)
        labels = [
            f"{lo:>3}" if hi - lo == 1 else f"{lo:>3}-{hi - 1}"
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
        return labels, [int(c) for c in counts]


def summarise_cases(cases: CaseTable, *, max_values: int = 40) -> DatasetSummary:
    """Summarise every case of the table (metadata columns with <= `max_values` values)."""
    words = np.fromiter((len(c.split()) for c in cases.captions()), dtype=np.int64)
    cuis = cases.cuis()
    per_value = {
        column: dict(Counter(cases.column(column)).most_common())
        for column in cases.filter_values(max_values)
        if column != "split"
    }
    return DatasetSummary(
        total=len(cases),
        per_split=dict(Counter(cases.column("split")).most_common()),
        per_value=per_value,
        caption_words=words,
        distinct_cuis=len({c for row in cuis for c in row}),
        cases_without_cuis=sum(1 for row in cuis if not row),
    )
