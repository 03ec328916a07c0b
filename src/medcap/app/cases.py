"""The indexed cases as the browser sees them: ids, captions, metadata, images, vectors.

Built once per index (cached by the app) on the index's own columns (`IndexDir.columns`),
so pages can show, filter and count cases without reading the items again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medcap.errors import ImageDecodeError, InputError
from medcap.types import ImageRef

if TYPE_CHECKING:
    from PIL import Image

    from medcap.index import ColumnKind, Filters, IndexDir, Target

_THUMB_CACHE_SIZE = 4096  # decoded thumbnails kept per index (small images, a few MB)


@dataclass(frozen=True)
class CaseInfo:
    """One case's text fields; `metadata` holds its extra columns as display strings."""

    image_id: str
    caption: str
    cuis: tuple[str, ...] = ()
    split: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


_CARD_FIELDS = 5  # metadata values shown on a result card


class CaseTable:
    """Read-only view of an index's cases, shared by every browser session.

    Columns, filters and filtered search are the index's own (`IndexDir.columns`,
    `IndexDir.search(where=...)`); this adds what pages show: case info, cards, images.
    """

    def __init__(self, index: IndexDir) -> None:
        self.index = index
        self.ids: list[str] = index.image_ids()
        columns = index.columns
        # Only columns with at least one value can be shown or filtered on.
        self.column_kinds: dict[str, ColumnKind] = dict(columns.kinds)
        self.metadata_columns: list[str] = list(self.column_kinds)
        values = {name: columns.values(name) for name in self.metadata_columns}
        infos: list[CaseInfo] = []
        self._paths: list[str | None] = []
        for row in range(len(self.ids)):
            hit = index.hit(row)
            meta = {name: values[name][row] for name in values if values[name][row]}
            infos.append(CaseInfo(hit.image_id, hit.caption, hit.cuis, hit.split, meta))
            self._paths.append(hit.image_path)
        self._infos = infos
        self._row_of = {image_id: row for row, image_id in enumerate(self.ids)}
        self._filter_values: dict[int, dict[str, list[str]]] = {}
        self._thumbs: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.linker: Any = None  # a StudyLinker (medcap app --pseudonym-key --viewer-url)

    @classmethod
    def from_index(cls, index: IndexDir) -> CaseTable:
        """Read every case of `index` (a few seconds for ROCOv2-sized indexes)."""
        return cls(index)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row_of

    def position(self, image_id: str) -> int:
        """The row of `image_id` (its place in browsing order)."""
        row = self._row_of.get(image_id)
        if row is None:
            raise InputError(f"no case {image_id!r} in the index {self.index.path}")
        return row

    def info(self, image_id: str) -> CaseInfo:
        """The text fields and metadata of one case."""
        return self._infos[self.position(image_id)]

    def viewer_url(self, image_id: str) -> str | None:
        """The case's study in the viewer, when the app links studies (else None)."""
        if self.linker is None:
            return None
        return self.linker.url_for(dict(self.info(image_id).metadata))  # type: ignore[no-any-return]

    def card_metadata(self, image_id: str, fields: Sequence[str] = ()) -> dict[str, str]:
        """The few text metadata values a result card shows.

        `fields` picks and orders them; when the index has none of those, the first text
        columns are used. A value already contained in a shown one is dropped ("right"
        after "right upper").
        """
        return pick_card_fields(self.info(image_id).metadata, self.column_kinds, fields)

    def first_id(self) -> str | None:
        """The first case in browsing (row) order."""
        return self.ids[0] if self.ids else None

    def adjacent(self, image_id: str) -> tuple[str | None, str | None]:
        """The cases before and after `image_id` in browsing order (None at the ends)."""
        row = self.position(image_id)
        before = self.ids[row - 1] if row > 0 else None
        after = self.ids[row + 1] if row + 1 < len(self.ids) else None
        return before, after

    # ---- columns (dataset page, filters) --------------------------------------------
    def captions(self) -> list[str]:
        """Every caption, in row order."""
        return [i.caption for i in self._infos]

    def cuis(self) -> list[tuple[str, ...]]:
        """Every case's CUIs, in row order."""
        return [i.cuis for i in self._infos]

    def column(self, name: str) -> list[str]:
        """`split` or a metadata column as display strings, in row order ("" when absent)."""
        if name != "split" and name not in self.column_kinds:
            return [""] * len(self.ids)
        return self.index.column(name)

    def filter_values(self, max_values: int) -> dict[str, list[str]]:
        """Filterable columns (split, text and flag metadata with 2..max_values values)."""
        cached = self._filter_values.get(max_values)
        if cached is not None:
            return cached
        out: dict[str, list[str]] = {}
        names = [n for n, kind in self.column_kinds.items() if kind != "number"]
        for name in ["split", *names]:
            values = sorted({v for v in self.column(name) if v})
            if 2 <= len(values) <= max_values:
                out[name] = values
        self._filter_values[max_values] = out
        return out

    def matching_rows(self, filters: Filters) -> NDArray[np.int64] | None:
        """Rows (ascending) whose columns take one of the accepted values; None: no filter."""
        return self.index.matching_rows(filters)

    def matching_ids(self, filters: Filters) -> set[str] | None:
        """Ids of cases whose columns take one of the accepted values; None: no filter."""
        rows = self.matching_rows(filters)
        return None if rows is None else {self.ids[r] for r in rows}

    # ---- images and vectors ---------------------------------------------------------
    def _file(self, image_id: str) -> Path | None:
        path = self._paths[self.position(image_id)]
        return Path(path) if path and Path(path).is_file() else None

    def has_original(self, image_id: str) -> bool:
        """Whether the case's original image file is reachable (else only its thumbnail)."""
        return self._file(image_id) is not None

    def image(self, image_id: str) -> Image.Image:
        """The case's image: the original file when reachable, else the stored thumbnail."""
        from medcap.data.images import load_image

        file = self._file(image_id)
        if file is not None:
            return load_image(file)
        stored = self.index.thumbnail(image_id)
        if stored is None:
            raise ImageDecodeError(
                f"case {image_id}: its image is not a file on disk and the index stores no "
                "thumbnail; rebuild the index with thumbnails to see it"
            )
        return load_image_bytes(stored, image_id)

    def thumbnail(self, image_id: str, max_px: int) -> Image.Image:
        """The case's image scaled to at most `max_px` per side (cached)."""
        key = (image_id, max_px)
        with self._lock:
            cached = self._thumbs.get(key)
            if cached is not None:
                self._thumbs.move_to_end(key)
                return cached
        stored = self.index.thumbnail(image_id)
        if stored is not None:
            image = load_image_bytes(stored, image_id)
            if max(image.size) < max_px and self._file(image_id) is not None:
                image = self.image(image_id)  # sharper than upscaling the stored thumbnail
        else:
            image = self.image(image_id)
        image = image.copy()
        image.thumbnail((max_px, max_px))
        with self._lock:
            self._thumbs[key] = image
            while len(self._thumbs) > _THUMB_CACHE_SIZE:
                self._thumbs.popitem(last=False)
        return image

    def vector(self, image_id: str, target: Target) -> NDArray[np.float32]:
        """The stored (1, d) unit float32 vector of one case ("images" or "captions")."""
        return self.index.vectors(np.array([self.position(image_id)], dtype=np.int64), target)


def pick_card_fields(
    metadata: Mapping[str, str], column_kinds: Mapping[str, ColumnKind], fields: Sequence[str]
) -> dict[str, str]:
    """The metadata a card shows: `fields` in that order (else the first text columns), at
    most five, dropping a value already contained in a shown one."""
    text = [k for k, kind in column_kinds.items() if kind == "text"]
    chosen = [f for f in fields if f in column_kinds] or text
    shown: dict[str, str] = {}
    for key in chosen:
        value = metadata.get(key, "")
        if not value or any(value.lower() in v.lower() for v in shown.values()):
            continue
        shown[key] = value
        if len(shown) == _CARD_FIELDS:
            break
    return shown


def load_image_bytes(data: bytes, image_id: str) -> Image.Image:
    """Decode stored image bytes (a thumbnail) to RGB; ImageDecodeError names the case."""
    from medcap.data.images import load_image

    return load_image(ImageRef(path=f"<thumbnail of {image_id}>", data=data))
