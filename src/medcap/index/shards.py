"""Float16 embedding shards under `emb/`: the unit of resume, add and rebuild.

Shard `NNNNN` is `image_NNNNN.npy`, `caption_NNNNN.npy` (float16, (m, d)),
`items_NNNNN.parquet` (m rows: image_id, caption, cuis, split, image_path, extra JSON,
thumbnail) and `shard_NNNNN.json`, written last: a shard is complete exactly when its
JSON exists. The JSON holds a digest of the input ids so a resumed build can check
that the same records come in the same order, and the size and checksum of each data
file so that a resumed build re-embeds a shard that was truncated or altered since.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from medcap.atomic import temp_files_of, write_atomic, write_json_atomic
from medcap.checksums import checksum_matches, file_checksum
from medcap.errors import CorruptArtifactError
from medcap.types import Record, Skipped

ITEM_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("caption", pa.string()),
        ("cuis", pa.list_(pa.string())),
        ("split", pa.string()),
        ("image_path", pa.string()),  # absolute path when the image is a file on disk
        ("extra", pa.string()),  # JSON object of the record's extra metadata columns
    ]
)
SHARD_SCHEMA = ITEM_SCHEMA.append(pa.field("thumbnail", pa.binary()))
TARGET_PREFIX = {"images": "image", "captions": "caption"}

Thumbnailer = Callable[[Record], bytes | None]


def shard_name(i: int) -> str:
    """Zero-padded shard name."""
    return f"{i:05d}"


def vector_path(emb_dir: Path, name: str, target: str) -> Path:
    """emb/image_NNNNN.npy or emb/caption_NNNNN.npy."""
    return emb_dir / f"{TARGET_PREFIX[target]}_{name}.npy"


def items_path(emb_dir: Path, name: str) -> Path:
    """emb/items_NNNNN.parquet."""
    return emb_dir / f"items_{name}.parquet"


def meta_path(emb_dir: Path, name: str) -> Path:
    """emb/shard_NNNNN.json, the completion marker."""
    return emb_dir / f"shard_{name}.json"


def data_files(emb_dir: Path, name: str) -> list[Path]:
    """The files of one shard that its JSON describes (vectors and items)."""
    return [
        vector_path(emb_dir, name, "images"),
        vector_path(emb_dir, name, "captions"),
        items_path(emb_dir, name),
    ]


def shard_files(emb_dir: Path, name: str) -> list[Path]:
    """All files of one shard."""
    return [*data_files(emb_dir, name), meta_path(emb_dir, name)]


def _describe(files: Sequence[Path]) -> dict[str, dict[str, Any]]:
    return {f.name: {"size": f.stat().st_size, "checksum": file_checksum(f)} for f in files}


def shard_problem(emb_dir: Path, name: str, meta: dict[str, Any]) -> str | None:
    """Why a complete shard's files cannot be trusted (missing, resized, altered), or None."""
    recorded = meta.get("files")
    files = data_files(emb_dir, name)
    if not isinstance(recorded, dict) or set(recorded) != {f.name for f in files}:
        return "its record lists no file checksums"
    for file in files:
        entry = recorded[file.name]
        if not file.is_file():
            return f"{file.name} is missing"
        size = file.stat().st_size
        if size != entry.get("size"):
            return f"{file.name} is {size} bytes, not {entry.get('size')}"
        if not checksum_matches(file, str(entry.get("checksum"))):
            return f"{file.name} does not match its checksum"
    return None


def ids_digest(ids: Sequence[str]) -> str:
    """Stable digest of an ordered list of image ids."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _image_path(record: Record) -> str | None:
    path = record.image.path
    if path and getattr(record.image, "store_path", True) and os.path.isfile(path):
        return os.path.abspath(path)
    return None


def record_rows(records: Sequence[Record], thumbnails: Sequence[bytes | None]) -> pa.Table:
    """The shard items table for `records` (same order)."""
    return pa.table(
        {
            "image_id": [r.image_id for r in records],
            "caption": [r.caption for r in records],
            "cuis": [list(r.cuis) for r in records],
            "split": [r.split for r in records],
            "image_path": [_image_path(r) for r in records],
            "extra": [
                json.dumps(dict(r.extra), default=_json_default, sort_keys=True) for r in records
            ],
            "thumbnail": list(thumbnails),
        },
        schema=SHARD_SCHEMA,
    )


def _write_vectors(path: Path, vectors: NDArray[Any]) -> None:
    write_atomic(path, lambda handle: np.save(handle, vectors))


def _write_items(path: Path, table: pa.Table) -> None:
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def write_shard(
    emb_dir: Path,
    name: str,
    *,
    input_ids: Sequence[str],
    records: Sequence[Record],
    image_emb: NDArray[np.float32],
    caption_emb: NDArray[np.float32],
    thumbnails: Sequence[bytes | None],
    skipped: Sequence[Skipped],
) -> int:
    """Write one complete shard (vectors as float16, items, then the JSON marker)."""
    assert image_emb.shape == caption_emb.shape and len(records) == image_emb.shape[0]
    for target, vectors in (("images", image_emb), ("captions", caption_emb)):
        _write_vectors(vector_path(emb_dir, name, target), vectors.astype(np.float16))
    _write_items(items_path(emb_dir, name), record_rows(records, thumbnails))
    meta = {
        "name": name,
        "inputs": len(input_ids),
        "ids_digest": ids_digest(input_ids),
        "count": len(records),
        "skipped": [asdict(s) for s in skipped],
        "files": _describe(data_files(emb_dir, name)),
    }
    write_json_atomic(meta_path(emb_dir, name), meta)
    return len(records)


def read_shard_meta(emb_dir: Path, name: str) -> dict[str, Any] | None:
    """The shard's completion record, or None when the shard is not complete."""
    path = meta_path(emb_dir, name)
    if not path.exists():
        return None
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not all(p.exists() for p in shard_files(emb_dir, name)):
        return None
    return meta


def remove_shard(emb_dir: Path, name: str) -> None:
    """Delete whatever exists of a shard (leftovers of an interrupted write)."""
    for path in shard_files(emb_dir, name):
        for p in (path, *temp_files_of(path)):
            p.unlink(missing_ok=True)


def shard_skipped(meta: dict[str, Any]) -> list[Skipped]:
    """The Skipped entries recorded in a shard's JSON."""
    return [Skipped(**s) for s in meta.get("skipped", [])]


def load_shard_vectors(
    emb_dir: Path, name: str, target: str, *, mmap: bool = False
) -> NDArray[Any]:
    """The float16 (m, d) vectors of one shard (memory-mapped when `mmap`)."""
    path = vector_path(emb_dir, name, target)
    try:
        return np.load(path, mmap_mode="r" if mmap else None)  # type: ignore[no-any-return]
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptArtifactError(
            f"{path} is damaged or truncated ({exc}); rebuild the index"
        ) from None


def to_unit_float32(vectors: NDArray[Any]) -> NDArray[np.float32]:
    """float16 shard rows -> float32, re-normalised to unit length (undoes fp16 rounding)."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return np.ascontiguousarray(out / norms, dtype=np.float32)


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet file of an index directory; a missing or damaged one names itself."""
    if not path.exists():
        raise CorruptArtifactError(
            f"{path} is missing; rebuild the index with `medcap index build`"
        )
    try:
        # ParquetFile, not read_table: read_table imports pyarrow.dataset (~0.5 s).
        with pq.ParquetFile(path) as file:
            return file.read(columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptArtifactError(
            f"{path} is damaged or truncated ({str(exc)[:120]}); rebuild the index"
        ) from None


def read_shard_items(emb_dir: Path, name: str, *, thumbnails: bool = False) -> pa.Table:
    """One shard's items table (without the thumbnail column unless asked)."""
    columns = SHARD_SCHEMA.names if thumbnails else ITEM_SCHEMA.names
    return read_parquet(items_path(emb_dir, name), columns)


def shard_ids(emb_dir: Path, name: str) -> list[str]:
    """The image_ids of one shard, in row order."""
    return [str(x) for x in read_shard_items(emb_dir, name).column("image_id").to_pylist()]


class ShardVectors:
    """Row-addressable view over all shards of one target, memory-mapped (for rescoring)."""

    def __init__(self, emb_dir: Path, names: Sequence[str], target: str) -> None:
        self._arrays = [load_shard_vectors(emb_dir, n, target, mmap=True) for n in names]
        sizes = [a.shape[0] for a in self._arrays]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def gather(self, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        """Unit float32 vectors (len(rows), d) for the given global rows."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(self._starts, rows, side="right") - 1
        dim = self._arrays[0].shape[1]
        out = np.empty((len(rows), dim), dtype=np.float16)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._arrays[s][rows[sel] - self._starts[s]]
        return to_unit_float32(out)

    def all(self) -> NDArray[np.float32]:
        """Every vector (n, d) as unit float32."""
        return np.concatenate([to_unit_float32(a) for a in self._arrays], axis=0)


def drop_rows(emb_dir: Path, name: str, image_ids: set[str], skipped: Sequence[Skipped]) -> int:
    """Rewrite a complete shard without the rows of `image_ids`, recording `skipped`.

    Returns the rows left. Files are replaced one by one and the JSON marker last, so an
    interruption leaves a shard that is incomplete (rebuilt), never inconsistent.
    """
    table = read_shard_items(emb_dir, name, thumbnails=True)
    keep = np.array([i not in image_ids for i in table.column("image_id").to_pylist()], bool)
    meta = read_shard_meta(emb_dir, name)
    if meta is None:
        raise CorruptArtifactError(f"shard {name} in {emb_dir} is incomplete; rebuild it")
    meta_path(emb_dir, name).unlink()
    for target in TARGET_PREFIX:
        vectors = load_shard_vectors(emb_dir, name, target)
        _write_vectors(vector_path(emb_dir, name, target), vectors[keep])
    _write_items(items_path(emb_dir, name), table.filter(pa.array(keep)))
    meta["count"] = int(keep.sum())
    meta["skipped"] = [*meta.get("skipped", []), *(asdict(s) for s in skipped)]
    meta["files"] = _describe(data_files(emb_dir, name))
    write_json_atomic(meta_path(emb_dir, name), meta)
    return int(meta["count"])
