"""Region search: re-score candidates by how their own image's same region matches a query's.

A crop alone says nothing of where it lies, so the region of a query is compared with the
same region (the same share of width and height) of each candidate the whole image found:
score = (1 - weight) * score + weight * region similarity (see medcap.retrieval.refine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medcap.index import IndexDir
from medcap.retrieval.refine import Roi, crop_relative, crop_roi, relative_box
from medcap.types import Hit

if TYPE_CHECKING:
    from PIL import Image

EncodeImages = Callable[[Sequence["Image.Image"]], NDArray[np.float32]]


def case_image(index: IndexDir, hit: Hit) -> Image.Image | None:
    """An indexed case's picture: its image file, else its stored thumbnail (None: neither)."""
    from medcap.data.images import load_image
    from medcap.errors import ImageDecodeError
    from medcap.types import ImageRef

    if hit.image_path:
        try:
            return load_image(ImageRef(path=hit.image_path))
        except ImageDecodeError:
            pass
    thumb = index.thumbnail(hit.image_id)
    if thumb is None:
        return None
    try:
        return load_image(ImageRef(path=f"{hit.image_id} (thumbnail)", data=thumb))
    except ImageDecodeError:
        return None


def rescore_by_region(
    hits: list[Hit],
    image: Image.Image,
    roi: Roi,
    *,
    weight: float,
    k: int,
    encode_images: EncodeImages,
    index: IndexDir,
    min_px: int = 1,
) -> list[Hit]:
    """The top `k` of `hits` re-scored by their own image's region at `roi`'s place (ranks
    renumbered; a case whose image cannot be read keeps its score for the region's part)."""
    region = crop_roi(image, roi, source="the query image", min_px=min_px)
    query = encode_images([region])[0]
    box = relative_box(roi, image.width, image.height)
    crops, slots = [], []
    for slot, hit in enumerate(hits):
        picture = case_image(index, hit)
        if picture is not None:
            crops.append(crop_relative(picture, box))
            slots.append(slot)
    similar: dict[int, float] = {}
    if crops:
        similar = dict(zip(slots, (encode_images(crops) @ query).tolist(), strict=True))
    scores = [(1 - weight) * h.score + weight * similar.get(i, h.score) for i, h in enumerate(hits)]
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], hits[i].rank))[:k]
    return [
        dataclasses.replace(hits[i], rank=rank, score=float(scores[i]))
        for rank, i in enumerate(order, start=1)
    ]
