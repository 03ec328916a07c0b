"""Turn complete shards into a finished index directory, then move it into place.

`finalize_index` is the one sequence build, add and merge end with. Order matters for
crash safety: FAISS files, items.parquet, thumbnails, the skipped list and the resolved
config first, `manifest.json` last, then a rename of the whole work directory. Memory
stays bounded by one shard of vectors at a time plus the FAISS index itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medcap.config import IndexConfig, dump_config
from medcap.errors import InputError
from medcap.index import faiss_ops
from medcap.index.manifest import (
    EMB_DIR,
    INDEX_FILES,
    ITEMS_NAME,
    MANIFEST_NAME,
    SKIPPED_NAME,
    TARGETS,
    THUMBS_NAME,
    IndexInfo,
    Manifest,
    write_manifest,
)
from medcap.index.planner import IndexPlan
from medcap.index.shards import (
    ITEM_SCHEMA,
    ShardVectors,
    load_shard_vectors,
    read_shard_items,
    to_unit_float32,
)
from medcap.types import Skipped

LOG = logging.getLogger(__name__)
THUMB_SCHEMA = pa.schema([("image_id", pa.string()), ("thumbnail", pa.binary())])


def partial_dir(out: Path) -> Path:
    """Where a build or add of `out` is written before the final rename."""
    return out.with_name(out.name + ".partial")


def write_faiss(
    work: Path,
    emb_dir: Path,
    names: Sequence[str],
    plan: IndexPlan | IndexInfo,
    dim: int,
    *,
    base: Path | None = None,
    seed: int = 0,
) -> None:
    """Write image.faiss and caption.faiss from the shards `names` (in row order).

    With `base` (an existing index directory), its FAISS files are extended with the
    shards instead of being rebuilt, which keeps a trained IVF-PQ quantizer.
    """
    for target in TARGETS:
        if base is not None:
            index = faiss_ops.read_index(base / INDEX_FILES[target])
        else:
            index = faiss_ops.new_index(plan.factory, dim)
            if not faiss_ops.is_trained(index):
                vectors = ShardVectors(emb_dir, names, target)
                train_size = getattr(plan, "train_size", 0) or len(vectors)
                rng = np.random.default_rng(seed)
                rows = np.sort(
                    rng.choice(len(vectors), size=min(train_size, len(vectors)), replace=False)
                )
                LOG.info("training %s on %d %s vectors", plan.factory, len(rows), target)
                faiss_ops.train_index(index, vectors.gather(rows))
        for name in names:
            faiss_ops.add_vectors(index, to_unit_float32(load_shard_vectors(emb_dir, name, target)))
        faiss_ops.write_index(index, work / INDEX_FILES[target])
        del index


def write_items(work: Path, emb_dir: Path, names: Sequence[str], *, thumbnails: bool) -> int:
    """Stream the shards' items into items.parquet (and thumbnails.parquet); return rows."""
    rows = 0
    items_writer = pq.ParquetWriter(work / ITEMS_NAME, ITEM_SCHEMA)
    thumbs_writer = pq.ParquetWriter(work / THUMBS_NAME, THUMB_SCHEMA) if thumbnails else None
    try:
        for name in names:
            table = read_shard_items(emb_dir, name, thumbnails=thumbnails)
            items_writer.write_table(table.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA))
            if thumbs_writer is not None:
                thumbs_writer.write_table(table.select(THUMB_SCHEMA.names).cast(THUMB_SCHEMA))
            rows += table.num_rows
    finally:
        items_writer.close()
        if thumbs_writer is not None:
            thumbs_writer.close()
    return rows


def write_skipped(work: Path, skipped: Sequence[Skipped]) -> None:
    """One JSON object per skipped item."""
    with open(work / SKIPPED_NAME, "w") as f:
        for s in skipped:
            f.write(json.dumps(asdict(s)) + "\n")


def file_sizes(work: Path) -> dict[str, int]:
    """Size in bytes of every file under `work` (relative names), the manifest excluded."""
    sizes: dict[str, int] = {}
    for path in sorted(work.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.endswith(".tmp"):
            sizes[path.relative_to(work).as_posix()] = path.stat().st_size
    return sizes


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same filesystem), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check_replaceable(out: Path, *, overwrite: bool) -> None:
    """Refuse to replace `out` unless asked to, and never replace a non-index directory."""
    if not out.exists():
        return
    if not overwrite:
        raise InputError(
            f"{out} already exists; pass --overwrite to replace it or choose another --out"
        )
    if not (out / MANIFEST_NAME).exists() and any(out.iterdir()):
        raise InputError(
            f"{out} exists and is not an index directory; --overwrite only replaces an index, "
            "so choose another --out"
        )


def swap_into_place(work: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished `work` directory to `out` (replacing `out` when allowed)."""
    if not out.exists():
        os.replace(work, out)
        return
    check_replaceable(out, overwrite=overwrite)
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(out, old)
    try:
        os.replace(work, out)
    except BaseException:
        os.replace(old, out)  # the old index stays in place when the swap fails
        raise
    shutil.rmtree(old, ignore_errors=True)


def emb_dir_of(directory: Path) -> Path:
    """The shard folder of an index or work directory."""
    return directory / EMB_DIR


def finalize_index(
    work: Path,
    out: Path,
    *,
    names: Sequence[str],
    plan: IndexPlan | IndexInfo,
    dim: int,
    skipped: Sequence[Skipped],
    thumbnails: bool,
    manifest: Callable[[dict[str, int]], Manifest],
    cfg: IndexConfig | None = None,
    extend: tuple[Path, Sequence[str]] | None = None,
    transient: Sequence[str] = (),
    overwrite: bool = False,
) -> Manifest:
    """Write the finished index in `work` from its complete shards `names` and rename it to `out`.

    `extend` (an index directory, the new shard names) adds only those shards to its FAISS
    files instead of rebuilding them. `cfg` is written as config.json; `transient` files
    (work-directory bookkeeping) are removed before `manifest(file sizes)` is written last.
    """
    emb_dir = emb_dir_of(work)
    base, faiss_names = extend if extend is not None else (None, names)
    write_faiss(work, emb_dir, faiss_names, plan, dim, base=base)
    write_items(work, emb_dir, names, thumbnails=thumbnails)
    write_skipped(work, skipped)
    if cfg is not None:
        dump_config(cfg, work / "config.json")  # the resolved IndexConfig of this index
    for name in transient:
        (work / name).unlink(missing_ok=True)
    final = manifest(file_sizes(work))
    write_manifest(final, work)  # last: from here on the directory is an index
    swap_into_place(work, out, overwrite=overwrite)
    return final
