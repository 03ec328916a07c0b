"""The index directory: FAISS indexes of image and caption vectors, items, manifest.

Knows vectors, rows and an encoder fingerprint; never open_clip. Builds stream, resume
and can be split over machines (`--shard i/n`, then `merge_parts`). Layout of `DIR/`:

    manifest.json        written last; format version, encoder spec + fingerprint (+ absolute
                         checkpoint path), dim, metric, count, sources, index type, factory
                         string, search params, why `auto` chose it, file sizes and
                         checksums (verified on open), created_at
    image.faiss          image vectors, row i = items row i (inner product over unit vectors)
    caption.faiss        caption vectors, same rows
    items.parquet        image_id, caption, cuis, split, image_path (absolute, only when the
                         image is a file on disk), extra (JSON of the record's metadata)
    thumbnails.parquet   image_id, thumbnail (JPEG, <= thumbnail_size px) when built with
                         thumbnails: lets the app show cases whose images live in parquet
    skipped.jsonl        cases left out (undecodable image, duplicate id), with reasons
    config.json          the resolved IndexConfig of the build
    emb/                 float16 shards: image_NNNNN.npy, caption_NNNNN.npy,
                         items_NNNNN.parquet, shard_NNNNN.json (resume, add, rescoring)
"""

from __future__ import annotations

from medcap.index.build import CaseEncoder, add_to_index, build_index
from medcap.index.filters import CaseColumns, ColumnKind, Filters
from medcap.index.manifest import Manifest
from medcap.index.merge import merge_parts
from medcap.index.remove import remove_from_index
from medcap.index.store import IndexDir, Target, open_index

__all__ = [
    "CaseColumns",
    "CaseEncoder",
    "ColumnKind",
    "Filters",
    "IndexDir",
    "Manifest",
    "Target",
    "add_to_index",
    "build_index",
    "merge_parts",
    "open_index",
    "remove_from_index",
]
