"""The built-in dataset: deterministic synthetic radiology cases ("phantoms").

Case i of seed s depends only on (s, i), so a larger set extends a smaller one. Splits
are contiguous blocks (train, then valid, then test) sized by
`DataConfig.phantom_split_fractions`. `build_phantoms` writes the Hugging Face parquet
layout of ROCOv2 (layout a) with the ground-truth attributes as extra columns; the same
seed gives byte-identical files.

>>> build_phantoms("phantoms", n=200, seed=0)  # doctest: +SKIP
PosixPath('phantoms')
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medcap.config import DEFAULTS, DataConfig
from medcap.data.phantoms.render import render_case
from medcap.data.phantoms.spec import CUI_NAMES, PhantomCase, sample_case
from medcap.data.phantoms.text import write_caption
from medcap.errors import InputError
from medcap.types import SPLITS, ImageRef, Record

log = logging.getLogger(__name__)

_ROW_GROUP_ROWS = 128
_JPEG_QUALITY = 90
_PNG_COMPRESS_LEVEL = 6

ATTRIBUTE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("modality", pa.string()),
    ("region", pa.string()),
    ("finding", pa.string()),
    ("location", pa.string()),
    ("side", pa.string()),
    ("level", pa.string()),
    ("size_cm", pa.float64()),
    ("severity", pa.string()),
    ("has_arrow", pa.bool_()),
    ("view", pa.string()),
    ("sequence", pa.string()),
    ("contrast", pa.bool_()),
    ("color", pa.bool_()),
    ("image_format", pa.string()),
)
SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("image_id", pa.string()),
        ("caption", pa.string()),
        ("cui", pa.list_(pa.string())),
        *ATTRIBUTE_FIELDS,
    ]
)


def split_counts(n: int, fractions: tuple[float, float, float] | None = None) -> dict[str, int]:
    """How many of `n` cases go to train, valid and test (they always add up to `n`)."""
    fractions = fractions or DEFAULTS.data.phantom_split_fractions
    if n < 0 or len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise InputError(
            f"bad phantom split: n={n}, fractions={fractions}; use n >= 0 and three fractions >= 0"
        )
    total = sum(fractions)
    n_train = int(round(n * fractions[0] / total))
    n_valid = min(n - n_train, int(round(n * fractions[1] / total)))
    return {"train": n_train, "valid": n_valid, "test": n - n_train - n_valid}


def make_phantom(seed: int, index: int, image_size: int) -> tuple[PhantomCase, bytes, str]:
    """Case `index` of `seed`: its attributes, encoded image bytes, and caption."""
    rng = np.random.default_rng([seed, index])
    case = sample_case(rng)
    image = render_case(case, image_size, rng)
    caption = write_caption(case, rng)
    buffer = io.BytesIO()
    if case.image_format == "JPEG":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return case, buffer.getvalue(), caption


def iter_phantom_records(
    n: int, seed: int | None = None, image_size: int | None = None, cfg: DataConfig | None = None
) -> Iterator[Record]:
    """Generate `n` phantom records in memory, split by the configured fractions."""
    cfg = cfg or DEFAULTS.data
    seed = cfg.phantom_seed if seed is None else seed
    size = image_size or cfg.phantom_image_size
    index = 0
    for split, count in split_counts(n, cfg.phantom_split_fractions).items():
        for _ in range(count):
            case, data, caption = make_phantom(seed, index, size)
            image_id = f"phantom_{split}_{index:06d}"
            suffix = ".jpg" if case.image_format == "JPEG" else ".png"
            yield Record(
                image_id=image_id,
                image=ImageRef(path=image_id + suffix, data=data),
                caption=caption,
                cuis=case.cuis(),
                split=split,
                extra=case.attributes(),
            )
            index += 1


def build_phantoms(
    out_dir: str | Path,
    n: int,
    seed: int,
    image_size: int | None = None,
    cfg: DataConfig | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write `n` phantoms to `out_dir` in layout (a): `data/{split}-NNNNN-of-NNNNN.parquet`.

    `out_dir` must be new or empty unless `overwrite`; then its `data/` folder is replaced
    atomically and other files in it are left alone. Returns `out_dir`.
    """
    cfg = cfg or DEFAULTS.data
    size = image_size or cfg.phantom_image_size
    if size < 32:
        raise InputError(f"phantom image size {size} is too small; use at least 32 pixels")
    out = Path(out_dir)
    _check_writable(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    counts = split_counts(n, cfg.phantom_split_fractions)
    records = iter_phantom_records(n, seed, size, cfg)
    for split in SPLITS:
        count = counts[split]
        shards = max(1, math.ceil(count / cfg.phantom_shard_rows)) if count else 0
        for shard in range(shards):
            rows = min(cfg.phantom_shard_rows, count - shard * cfg.phantom_shard_rows)
            batch = [next(records) for _ in range(rows)]
            _write_shard(partial / f"{split}-{shard:05d}-of-{shards:05d}.parquet", batch)
    final = out / "data"
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)  # only reached with overwrite (or in a folder that was empty)
    partial.rename(final)
    _write_sidecars(out, n, seed, size, counts)
    log.debug("wrote %d phantoms (seed %d, %d px) to %s", n, seed, size, out)
    return out


def _check_writable(out: Path, *, overwrite: bool) -> None:
    """Refuse a file, and a non-empty folder unless `overwrite` (it may hold a user's data)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is an existing file, not a folder; pass a new or empty folder")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise InputError(
            f"{out} is not empty; pass a new or empty folder, or --overwrite to replace its data/"
        )


def _write_shard(path: Path, records: list[Record]) -> None:
    columns: dict[str, list[object]] = {
        "image": [{"bytes": r.image.data, "path": r.image.path} for r in records],
        "image_id": [r.image_id for r in records],
        "caption": [r.caption for r in records],
        "cui": [list(r.cuis) for r in records],
    }
    for name, _ in ATTRIBUTE_FIELDS:
        columns[name] = [r.extra.get(name) for r in records]
    table = pa.table(columns, schema=_schema_with_features())
    pq.write_table(table, path, row_group_size=_ROW_GROUP_ROWS, compression="zstd")


def _schema_with_features() -> pa.Schema:
    """The schema plus Hugging Face `datasets` feature metadata (so `image` loads as Image)."""
    features: dict[str, object] = {
        "image": {"_type": "Image"},
        "image_id": {"dtype": "string", "_type": "Value"},
        "caption": {"dtype": "string", "_type": "Value"},
        "cui": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
    }
    for name, dtype in ATTRIBUTE_FIELDS:
        features[name] = {"dtype": str(dtype).replace("double", "float64"), "_type": "Value"}
    metadata = {"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True)}
    return SCHEMA.with_metadata(metadata)


def _write_sidecars(out: Path, n: int, seed: int, size: int, counts: dict[str, int]) -> None:
    mapping = "CUI,Canonical name\n" + "".join(f"{cui},{name}\n" for cui, name in CUI_NAMES.items())
    (out / "cui_mapping.csv").write_text(mapping)
    card = (
        "# medcap phantoms\n\n"
        "Synthetic radiology-like cases generated by `medcap data phantoms` "
        f"(n={n}, seed={seed}, image size {size} px; "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + ").\nLayout: Hugging Face parquet (`data/{split}-NNNNN-of-NNNNN.parquet`) with columns "
        "image{bytes,path}, image_id, caption, cui and the ground-truth attributes "
        + ", ".join(name for name, _ in ATTRIBUTE_FIELDS)
        + ".\nLocations use the radiological convention: "
        "the patient's right is on the image's left.\n"
    )
    (out / "README.md").write_text(card)
