"""`data info`: per-split counts, caption lengths, image sizes and modes, CUI coverage.

Every image of a split is decoded (or the first `max_images`), so unreadable images are
found, counted and listed with the reader's own skipped rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from medcap.data.dataset import Dataset
from medcap.data.images import probe_image
from medcap.errors import ImageDecodeError
from medcap.types import Skipped

log = logging.getLogger(__name__)


def summarise_dataset(dataset: Dataset, *, max_images: int | None = None) -> dict[str, Any]:
    """A JSON-ready summary: `{"name", "fingerprint", "splits": {split: {...}}, "skipped": [...]}`.

    Per split: `count` (records read), `caption_words` (mean, median, p90), `image_size`
    and `modes` / `formats` counts over the decoded images, `cui_coverage` (share of
    cases with at least one CUI), `unique_cuis`, `images_checked`, `unreadable_images`.
    """
    splits: dict[str, Any] = {}
    skipped_rows: list[tuple[str, Skipped]] = []
    for split in dataset.splits():
        already = len(dataset.skipped)
        words: list[int] = []
        sizes: Counter[str] = Counter()
        modes: Counter[str] = Counter()
        formats: Counter[str] = Counter()
        cuis: Counter[str] = Counter()
        with_cuis = checked = unreadable = count = 0
        for record in dataset.records(split):
            count += 1
            words.append(len(record.caption.split()))
            cuis.update(record.cuis)
            with_cuis += bool(record.cuis)
            if max_images is not None and checked >= max_images:
                continue
            checked += 1
            try:
                info = probe_image(record.image)
            except ImageDecodeError as exc:
                unreadable += 1
                skip = Skipped(record.image.describe(), None, record.image_id, str(exc))
                skipped_rows.append((split, skip))
                continue
            sizes[f"{info.width}x{info.height}"] += 1
            modes[info.mode] += 1
            formats[info.format] += 1
        splits[split] = {
            "count": count,
            "caption_words": _word_stats(words),
            "image_size": _size_stats(sizes),
            "modes": dict(modes.most_common()),
            "formats": dict(formats.most_common()),
            "cui_coverage": round(with_cuis / count, 4) if count else 0.0,
            "unique_cuis": len(cuis),
            "top_cuis": dict(cuis.most_common(10)),
            "images_checked": checked,
            "unreadable_images": unreadable,
        }
        skipped_rows.extend((split, s) for s in dataset.skipped[already:])
        log.debug("summarised split %s: %d cases", split, count)
    skipped = [_skip_dict(s, split) for split, s in skipped_rows]
    reasons = Counter(_reason_kind(s["reason"]) for s in skipped)
    return {
        "name": dataset.name,
        "fingerprint": dataset.fingerprint(),
        "splits": splits,
        "total": sum(s["count"] for s in splits.values()),
        "skipped_counts": dict(reasons.most_common()),
        "skipped": skipped,
    }


def _word_stats(words: list[int]) -> dict[str, float]:
    if not words:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    values = np.asarray(words, dtype=np.float64)
    return {
        "mean": round(float(values.mean()), 2),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
    }


def _size_stats(sizes: Counter[str]) -> dict[str, Any]:
    if not sizes:
        return {"most_common": None, "min": None, "max": None, "counts": {}}
    dims = [tuple(int(v) for v in key.split("x")) for key in sizes]
    by_area = sorted(dims, key=lambda d: (d[0] * d[1], d))
    return {
        "most_common": sizes.most_common(1)[0][0],
        "min": list(by_area[0]),
        "max": list(by_area[-1]),
        "counts": dict(sizes.most_common(10)),
    }


def _skip_dict(skip: Skipped, split: str) -> dict[str, Any]:
    return {
        "source": skip.source,
        "row": skip.row,
        "image_id": skip.image_id,
        "reason": skip.reason,
        "split": split,
    }


def _reason_kind(reason: str) -> str:
    """Group reasons for counting: `duplicate image_id (first at ...)` -> `duplicate image_id`."""
    if reason.startswith("cannot decode image"):
        return "unreadable image"
    if reason.startswith("image file not found"):
        return "image file not found"
    return reason.split(" (")[0]
