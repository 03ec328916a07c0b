"""The `Dataset` every reader returns: splits, lazy records, counts, skipped rows, fingerprint.

Readers yield raw rows; this base class checks them (empty caption, missing image,
duplicate `image_id` within a split), skips bad ones into `.skipped`, and turns the rest
into `Record`s, keeping only the metadata columns in `DataConfig.keep_columns` (so a
`PatientName` column never reaches an index). Images stay lazy (bytes or a path in
`ImageRef`) until decoded.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from medcap.config import DEFAULTS, DataConfig
from medcap.errors import InputError
from medcap.types import SPLITS, ImageRef, Record, Skipped

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
}
_CUI_SEPARATORS = re.compile(r"[;,|\s]+")


def normalise_split(name: str) -> str:
    """`validation`/`val`/`dev` -> `valid`, `training` -> `train`; other names lower-cased."""
    key = str(name).strip().lower()
    return _SPLIT_ALIASES.get(key, key)


def order_splits(names: Iterable[str]) -> list[str]:
    """train, valid, test first, then any other split names alphabetically."""
    unique = set(names)
    return [s for s in SPLITS if s in unique] + sorted(unique - set(SPLITS))


def parse_cuis(value: Any) -> tuple[str, ...]:
    """CUIs from a list, or from a string joined with `;` (or `,`, `|`, spaces)."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = _CUI_SEPARATORS.split(value)
    elif isinstance(value, Iterable):
        items = value
    else:
        items = [value]
    return tuple(s for s in (str(v).strip() for v in items if v is not None) if s)


@dataclass(frozen=True)
class Columns:
    """Column names a user gave (`--id-column`, ...); None: the layout's usual name, which
    the dataset's DataConfig (`Dataset.config`) names."""

    id: str | None = None
    caption: str | None = None
    image: str | None = None
    cui: str | None = None
    split: str | None = None


DEFAULT_COLUMNS = Columns()


@dataclass
class RawRow:
    """One row as a reader found it, before checks."""

    source: str  # file (or dataset name) the row came from
    row: int  # 0-based row in that source
    image_id: str | None
    caption: str | None
    cuis: tuple[str, ...]
    image: ImageRef | None
    extra: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None  # set by a reader that already knows the row is bad


class Dataset(ABC):
    """A dataset of cases, read lazily split by split.

    >>> ds = open_dataset("phantoms")  # doctest: +SKIP
    >>> next(ds.records("train")).caption  # doctest: +SKIP
    """

    allows_empty_captions = False  # True: a case without a caption is kept (image search only)

    def __init__(self, name: str, cfg: DataConfig | None = None) -> None:
        self.name = name
        # Column names, table encoding, path containment and kept columns (default: DEFAULTS).
        self.config = cfg or DEFAULTS.data
        # Metadata columns seen but not in `config.keep_columns` (dropped, never copied on).
        self.dropped_columns: set[str] = set()
        self.skipped: list[Skipped] = []
        self._skip_keys: set[tuple[str, int | None, str | None, str]] = set()
        self._counts: dict[str, int] = {}

    @abstractmethod
    def splits(self) -> list[str]:
        """Normalised split names present (train, valid, test first)."""

    @abstractmethod
    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        """Raw rows of a normalised split; without images when only counting."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable hex digest of the dataset's content listing (files, sizes, rows)."""

    def records(self, split: str) -> Iterator[Record]:
        """The split's cases in order; bad rows are skipped and added to `.skipped`."""
        split = self._check_split(split)
        keep = frozenset(self.config.keep_columns)
        count = 0
        for row_id, row in self._checked(split, with_images=True):
            assert row.image is not None and row.caption is not None
            count += 1
            extra = {k: v for k, v in row.extra.items() if k in keep}
            if len(extra) < len(row.extra):
                self.dropped_columns.update(k for k in row.extra if k not in keep)
            yield Record(
                image_id=row_id,
                image=row.image,
                caption=row.caption,
                cuis=row.cuis,
                split=split,
                extra=extra,
            )
        self._counts[split] = count

    def deferred(self) -> Dataset:
        """This dataset with images that its own tables hold left unread in its records
        (`medcap.data.fetch_images` reads them where they are decoded). Images on files
        are read where they are decoded anyway, so the base class returns itself."""
        return self

    def count(self, split: str) -> int:
        """How many records `records(split)` yields (a pass without image data, cached)."""
        split = self._check_split(split)
        if split not in self._counts:
            self._counts[split] = sum(1 for _ in self._checked(split, with_images=False))
        return self._counts[split]

    def ids(self, split: str) -> list[str]:
        """The image_id of every case `records(split)` yields (a pass without image data)."""
        return [
            image_id
            for image_id, _row in self._checked(self._check_split(split), with_images=False)
        ]

    def cui_names(self) -> dict[str, str]:
        """CUI -> canonical name where the dataset ships a mapping (else empty)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, splits={self.splits()})"

    def _check_split(self, split: str) -> str:
        name = normalise_split(split)
        available = self.splits()
        if name not in available:
            raise InputError(
                f"dataset {self.name} has no split {split!r}; "
                f"available splits: {', '.join(available) or 'none'}"
            )
        return name

    def _checked(self, split: str, *, with_images: bool) -> Iterator[tuple[str, RawRow]]:
        seen: dict[str, tuple[str, int]] = {}
        for row in self._rows(split, with_images=with_images):
            image_id = (row.image_id or "").strip()
            problem = row.problem
            if problem is None:
                if not image_id:
                    problem = "missing image_id"
                elif not self.allows_empty_captions and not str(row.caption or "").strip():
                    problem = "empty caption"
                elif with_images and row.image is None:
                    problem = "missing image"
                elif image_id in seen:
                    first_source, first_row = seen[image_id]
                    problem = f"duplicate image_id (first at row {first_row} of {first_source})"
            if problem is not None:
                self._skip(row.source, row.row, image_id or None, problem)
                continue
            seen[image_id] = (row.source, row.row)
            row.caption = str(row.caption or "").strip()
            yield image_id, row

    def _skip(self, source: str, row: int | None, image_id: str | None, reason: str) -> None:
        key = (source, row, image_id, reason)
        if key not in self._skip_keys:
            self._skip_keys.add(key)
            self.skipped.append(Skipped(source=source, row=row, image_id=image_id, reason=reason))
