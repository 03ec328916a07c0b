"""What the search and case pages do per interaction: decode, encode, search, filter, cards."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from medcap.app.cards import CaseCard, cards_from_hits
from medcap.config import DEFAULTS, SearchMode
from medcap.errors import ImageDecodeError, ImageTooLargeError
from medcap.types import Hit, ImageRef

if TYPE_CHECKING:
    from PIL import Image

    from medcap.app.session import AppIndex

log = logging.getLogger(__name__)

Filters = Mapping[str, Sequence[str]]  # metadata column -> accepted values (empty: any)


def decode_upload(
    name: str, data: bytes, max_pixels: int = DEFAULTS.app.max_upload_pixels
) -> Image.Image:
    """Decode an uploaded file (PNG, JPEG, DICOM, ...) to RGB; ImageDecodeError names it.

    Uploads declaring more than `max_pixels` pixels are refused before decoding.
    """
    from medcap.data.images import load_image

    if not data:
        raise ImageDecodeError(f"{name} is empty; upload a PNG, JPEG or DICOM image")
    try:
        return load_image(ImageRef(path=name, data=data), max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{exc}; uploads are limited by app.max_upload_pixels") from None
    except ImageDecodeError as exc:
        log.info("upload %s not decoded: %s", name, exc)
        raise ImageDecodeError(
            f"{name} is not an image medcap can read; upload a PNG, JPEG or DICOM file"
        ) from None


def upload_id(name: str, data: bytes) -> str:
    """A stable id for an uploaded file (never equal to an indexed image_id)."""
    return f"upload:{name}:{hashlib.sha1(data).hexdigest()[:10]}"


def _filtered_search(
    app: AppIndex,
    search: _Search,
    k: int,
    filters: Filters | None,
) -> list[Hit]:
    """Top-`k` hits among the cases that pass `filters` (all cases without filters)."""
    rows = app.cases.matching_rows(filters or {})
    if rows is None:
        return search(min(k, len(app.cases)))
    return search.within(rows, k)


class _Search:
    """One query (image, text or stored vector), encoded once, searched in the index."""

    def __init__(
        self,
        app: AppIndex,
        *,
        image: Image.Image | None = None,
        text: str | None = None,
        vector: NDArray[np.float32] | None = None,
        mode: SearchMode,
        exclude_id: str | None = None,
    ) -> None:
        self.app, self.mode, self.exclude = app, mode, [exclude_id]
        if vector is None:
            encoder = app.retriever.encoder
            vector = (
                encoder.encode_images([image])
                if image is not None
                else encoder.encode_texts([text or ""])
            )
        self.vector = vector

    def within(self, rows: NDArray[np.int64], k: int) -> list[Hit]:
        """Exact top-`k` among `rows`, scored on the stored vectors the index holds.

        Ordered as the index orders its results (score descending, ties by row), so a
        filter that keeps every case gives the same hits as an unfiltered flat search.
        """
        from medcap.index.store import order_candidates

        index = self.app.retriever.index
        if self.exclude[0] is not None:
            own = index.row_of(self.exclude[0])
            rows = rows[rows != own] if own is not None else rows
        if rows.size == 0:
            return []
        scores = self.app.cases.vectors(rows, self.target) @ self.vector[0]
        take = min(rows.size, 4 * k + 16)  # slack so ties at the k-th place stay row-ordered
        top = (
            np.argpartition(-scores, take - 1)[:take] if take < rows.size else np.arange(rows.size)
        )
        ordered = order_candidates(rows[top], scores[top].astype(np.float32))[:k]
        return [index.hit(row, rank, score) for rank, (row, score) in enumerate(ordered, start=1)]

    @property
    def target(self) -> Literal["images", "captions"]:
        """The indexed vectors this search ranks."""
        return "images" if self.mode == "images" else "captions"

    def __call__(self, fetch: int) -> list[Hit]:
        """Top-`fetch` hits from the index's own search (FAISS)."""
        return self.app.retriever.index.search(
            self.vector, fetch, target=self.target, exclude_ids=self.exclude
        )[0]


def search_cases(
    app: AppIndex,
    *,
    image: Image.Image | None = None,
    text: str | None = None,
    k: int,
    mode: SearchMode,
    filters: Filters | None = None,
    exclude_id: str | None = None,
    thumbnail_px: int | None = None,
) -> list[CaseCard]:
    """Search by image (or else by text) and return top-`k` result cards (all cosine scores).

    `mode` is what the query is matched against: the indexed "images" or "captions".
    With `filters`, the cases that pass are scored exactly on their stored vectors.
    `exclude_id` drops that case from its own results (a case's neighbours).
    """
    if image is None and not (text and text.strip()):
        return []
    search = _Search(app, image=image, text=text, mode=mode, exclude_id=exclude_id)
    hits = _filtered_search(app, search, k, filters)
    return cards_from_hits(app.cases, hits, thumbnail_px=thumbnail_px)


def case_neighbours(
    app: AppIndex,
    image_id: str,
    *,
    k: int,
    mode: SearchMode,
    filters: Filters | None = None,
    thumbnail_px: int | None = None,
) -> list[CaseCard]:
    """An indexed case's own nearest neighbours (itself excluded), from its stored vector."""
    vector = app.cases.vector(image_id, "images")
    search = _Search(app, vector=vector, mode=mode, exclude_id=image_id)
    hits = _filtered_search(app, search, k, filters)
    return cards_from_hits(app.cases, hits, thumbnail_px=thumbnail_px)
