"""What the search and case pages do per interaction: decode, encode, search, filter, cards."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medcap.app.cards import CaseCard, cards_from_hits
from medcap.app.remote import AnyIndex, RemoteIndex
from medcap.config import SearchMode, current
from medcap.errors import ImageDecodeError, ImageTooLargeError, InputError
from medcap.types import Hit, ImageRef

if TYPE_CHECKING:
    from PIL import Image

    from medcap.app.session import AppIndex
    from medcap.retrieval import Refinement

log = logging.getLogger(__name__)

Filters = Mapping[str, Sequence[str]]  # metadata column -> accepted values (empty: any)


def decode_upload(name: str, data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode an uploaded file (PNG, JPEG, DICOM, ...) to RGB; ImageDecodeError names it.

    Uploads declaring more than `max_pixels` pixels (default: the active config's
    `app.max_upload_pixels`) are refused before decoding.
    """
    from medcap.data.images import load_image

    if not data:
        raise ImageDecodeError(f"{name} is empty; upload a PNG, JPEG or DICOM image")
    limit = current().app.max_upload_pixels if max_pixels is None else max_pixels
    try:
        return load_image(ImageRef(path=name, data=data), max_pixels=limit)
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


def _search(
    app: AppIndex,
    vector: NDArray[np.float32],
    *,
    k: int,
    mode: SearchMode,
    filters: Filters | None,
    exclude_id: str | None,
) -> list[Hit]:
    """Top-`k` hits of one encoded query among the cases that pass `filters` (the index's
    filtered search: exact on the stored vectors, ordered as its unfiltered search)."""
    index = app.retriever.index
    active = {name: values for name, values in (filters or {}).items() if values}
    return index.search(
        vector,
        k if active else min(k, len(index)),
        target="images" if mode == "images" else "captions",
        exclude_ids=[exclude_id],
        where=active or None,
    )[0]


def search_cases(
    app: AnyIndex,
    *,
    image: Image.Image | None = None,
    text: str | None = None,
    k: int,
    mode: SearchMode,
    filters: Filters | None = None,
    exclude_id: str | None = None,
    thumbnail_px: int | None = None,
    refine: Refinement | None = None,
) -> list[CaseCard]:
    """Search by image (or else by text) and return top-`k` result cards (all cosine scores).

    `mode` is what the query is matched against: the indexed "images" or "captions".
    With `filters`, the cases that pass are scored exactly on their stored vectors.
    `exclude_id` drops that case from its own results (a case's neighbours). `refine`
    changes the query first (region, steering text, more/less-like marks). With a
    `medcap serve` service (`RemoteIndex`) the service searches.
    """
    if image is None and not (text and text.strip()):
        return []
    if isinstance(app, RemoteIndex):
        if exclude_id is not None:
            raise InputError("a query excluding a case is not offered through the service")
        return app.search_cards(
            image=image, text=None if image is not None else text, k=k, mode=mode,
            filters=filters, thumbnail_px=thumbnail_px, refine=refine,
        )  # fmt: skip
    encoder = app.retriever.encoder
    vector = (
        encoder.encode_images([image]) if image is not None else encoder.encode_texts([text or ""])
    )
    if refine is not None and not refine.empty:
        active = {name: values for name, values in (filters or {}).items() if values}
        [hits] = app.retriever.search_refined(
            vector, refine, k, mode=mode, images=[image] if image is not None else None,
            exclude_ids=[exclude_id], where=active or None,
        )  # fmt: skip
    else:
        hits = _search(app, vector, k=k, mode=mode, filters=filters, exclude_id=exclude_id)
    return cards_from_hits(app.cases, hits, thumbnail_px=thumbnail_px)


def case_neighbours(
    app: AnyIndex,
    image_id: str,
    *,
    k: int,
    mode: SearchMode,
    filters: Filters | None = None,
    thumbnail_px: int | None = None,
) -> list[CaseCard]:
    """An indexed case's own nearest neighbours (itself excluded), from its stored vector."""
    if isinstance(app, RemoteIndex):
        return app.search_cards(
            image=None, text=None, case=image_id, k=k, mode=mode, filters=filters,
            thumbnail_px=thumbnail_px,
        )  # fmt: skip
    vector = app.cases.vector(image_id, "images")
    hits = _search(app, vector, k=k, mode=mode, filters=filters, exclude_id=image_id)
    return cards_from_hits(app.cases, hits, thumbnail_px=thumbnail_px)
