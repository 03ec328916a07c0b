"""Small JPEG thumbnails of indexed cases, stored in the index so the app can show any hit.

Images that live inside a dataset's parquet files have no path the app could open, so
the index keeps a thumbnail per case (longest side `IndexConfig.thumbnail_size` pixels,
about 3-6 kB each) in `thumbnails.parquet`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from medcap.config import DEFAULTS
from medcap.errors import MedcapError
from medcap.types import Record

LOG = logging.getLogger(__name__)


def make_thumbnail(record: Record, size: int = DEFAULTS.index.thumbnail_size) -> bytes | None:
    """JPEG bytes of the record's image scaled to fit `size` x `size`; None if undecodable."""
    from medcap.data.images import load_image

    try:
        image = load_image(record.image, draft_size=size)
    except MedcapError as exc:
        LOG.debug("no thumbnail for %s: %s", record.image_id, exc)
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def thumbnailer(
    size: int = DEFAULTS.index.thumbnail_size,
) -> Callable[[Record], bytes | None] | None:
    """A thumbnail function for `build_index` (None when `size` is 0: no thumbnails)."""
    if size <= 0:
        return None
    return lambda record: make_thumbnail(record, size)
