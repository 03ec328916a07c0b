"""Small value types passed between stages (records, hits, captions, skipped items)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class ImageRef:
    """A lazy reference to one image: encoded bytes held in memory, or a file path.

    `path` is kept even when `data` is set (parquet rows store both), for messages.
    """

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    store_path: bool = True  # False: an index never records `path` (DICOM: it may name a patient)

    def describe(self) -> str:
        """A short human-readable name for error messages and skipped rows (never a path the
        index may not record: a DICOM file's path can name a patient)."""
        if not self.store_path:
            return "<DICOM file, path withheld>"
        return self.path or "<in-memory image>"


@dataclass(frozen=True)
class Record:
    """One case: an image, its caption, its UMLS concepts and its split."""

    image_id: str
    image: ImageRef
    caption: str
    cuis: tuple[str, ...] = ()
    split: str = "train"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """An item left out of a run, with where it came from and why."""

    source: str  # file or dataset name
    row: int | None  # 0-based row in that source, when known
    image_id: str | None
    reason: str


@dataclass(frozen=True)
class Hit:
    """One search result. `score` is cosine similarity in [-1, 1]; `rank` is 1-based.

    `metadata` holds the case's other columns as the dataset gave them (modality, ...);
    `image_path` is the image file when the case has one on disk.
    """

    rank: int
    score: float
    image_id: str
    caption: str
    cuis: tuple[str, ...] = ()
    split: str = ""
    image_path: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def extra(self) -> Mapping[str, Any]:
        """The former name of `metadata` (as in `Record.extra`)."""
        return self.metadata


@dataclass(frozen=True)
class Caption:
    """A generated caption with its provenance."""

    text: str
    backend: str
    model: str
    latency_s: float
    neighbour_ids: tuple[str, ...] = ()
    neighbour_scores: tuple[float, ...] = ()
