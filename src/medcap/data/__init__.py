"""Datasets: readers for every layout, image decoding, and the phantom generator.

No torch or open_clip here: records carry lazy image references; models live elsewhere.
"""

from __future__ import annotations

from medcap.data.dataset import Dataset, normalise_split
from medcap.data.images import load_image, to_rgb
from medcap.data.parquet_reader import TableImageRef, fetch_images
from medcap.data.phantoms import build_phantoms, iter_phantom_records
from medcap.data.readers import open_dataset

__all__ = [
    "Dataset",
    "TableImageRef",
    "build_phantoms",
    "fetch_images",
    "iter_phantom_records",
    "load_image",
    "normalise_split",
    "open_dataset",
    "to_rgb",
]
