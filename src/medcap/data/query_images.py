"""Query images in whatever form a caller holds them, as 8-bit RGB PIL images.

A query is a file path (PNG, JPEG, DICOM, ...: anything `load_image` reads), an
`ImageRef`, encoded bytes, a PIL image of any mode, or a numpy array: (H, W) grayscale
or (H, W, C) with 1, 3 or 4 channels, of any integer, float or bool dtype. Arrays that
are not 8-bit are windowed min-max to 8 bits, as 16-bit files are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medcap.data.images import load_image, to_rgb, window_to_uint8
from medcap.errors import ImageDecodeError
from medcap.types import ImageRef

QueryImage = str | Path | ImageRef | bytes | Image.Image | np.ndarray


def image_from_array(array: np.ndarray) -> Image.Image:
    """An RGB image from (H, W) or (H, W, C) pixels (C = 1, 3 or 4), any numeric dtype."""
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ImageDecodeError(
            f"an image array must be (H, W) or (H, W, C) with C = 1, 3 or 4, got shape "
            f"{pixels.shape}; pass a list of arrays for several images"
        )
    if pixels.size == 0:
        raise ImageDecodeError(f"an image array of shape {pixels.shape} holds no pixels")
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype != np.uint8:
        pixels = window_to_uint8(pixels.astype(np.float64))
    return to_rgb(Image.fromarray(np.ascontiguousarray(pixels)))


def load_query_image(query: Any) -> Image.Image:
    """One query image as 8-bit RGB; ImageDecodeError names what could not be read."""
    if isinstance(query, Image.Image):
        return to_rgb(query)
    if isinstance(query, np.ndarray):
        return image_from_array(query)
    if isinstance(query, bytes):
        return load_image(ImageRef(data=query))
    if isinstance(query, str | Path | ImageRef):
        return load_image(query)
    raise ImageDecodeError(
        f"cannot use a {type(query).__name__} as an image query; pass a file path, a PIL "
        "image or a numpy array"
    )


def as_query_list(queries: Any) -> list[Any]:
    """One query, or a list or tuple of them, as a list (a single array is one image)."""
    if isinstance(queries, list | tuple):
        return list(queries)
    if isinstance(queries, Sequence) and not isinstance(queries, str | bytes):
        return list(queries)
    return [queries]
