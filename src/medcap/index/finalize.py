"""Turn complete shards into a finished index directory, then move it into place.

Order matters for crash safety: FAISS files, items.parquet, thumbnails and the skipped
list first, `manifest.json` last, then a rename of the whole work directory. Memory
stays bounded by one shard of vectors at a time plus the FAISS index itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medcap import __version__
from medcap.checksums import file_checksum
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
    EncoderInfo,
    IndexInfo,
    Manifest,
    ShardInfo,
    SourceInfo,
    now_iso,
    write_manifest,
)
from medcap.index.planner import IndexPlan, plan_index
from medcap.index.shards import (
    ITEM_SCHEMA,
    ShardVectors,
    load_shard_vectors,
    read_shard_items,
    read_shard_meta,
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


def describe_files(work: Path) -> tuple[dict[str, int], dict[str, str]]:
    """(sizes in bytes, checksums) of every file under `work` by relative name, the
    manifest excluded: what the manifest records and `open_index` verifies."""
    sizes: dict[str, int] = {}
    checksums: dict[str, str] = {}
    for path in sorted(work.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.endswith(".tmp"):
            name = path.relative_to(work).as_posix()
            sizes[name] = path.stat().st_size
            checksums[name] = file_checksum(path)
    return sizes, checksums


def shard_counts(emb_dir: Path, names: Sequence[str]) -> tuple[ShardInfo, ...]:
    """Name and case count of each complete shard, in order."""
    out = []
    for name in names:
        meta = read_shard_meta(emb_dir, name)
        assert meta is not None
        out.append(ShardInfo(name, int(meta["count"])))
    return tuple(out)


def _empty_part_plan(cfg: IndexConfig) -> IndexPlan:
    reason = "empty part of a sharded build: no case fell to it (merge plans the whole index)"
    return IndexPlan("flat", "Flat", {}, reason, cfg.index_type)


def finish_index(
    work: Path,
    names: Sequence[str],
    skipped: Sequence[Skipped],
    cfg: IndexConfig,
    *,
    encoder: EncoderInfo,
    source: SourceInfo,
    thumbnails: bool,
    part: str = "",
) -> Manifest:
    """Write the FAISS files, items, skipped list and config of `work` from its shards
    `names` (`source.count` cases; 0 only for an empty part), then, last, the manifest
    with the size and checksum of every file. Returns the manifest."""
    emb_dir, dim, count = emb_dir_of(work), encoder.embed_dim, source.count
    plan = plan_index(count, dim, cfg) if count else _empty_part_plan(cfg)
    LOG.debug("index type %s (%s): %s", plan.type, plan.factory, plan.reason)
    write_faiss(work, emb_dir, names, plan, dim)
    write_items(work, emb_dir, names, thumbnails=thumbnails)
    write_skipped(work, skipped)
    dump_config(cfg, work / "config.json")  # the resolved IndexConfig of this build
    sizes, checksums = describe_files(work)
    manifest = Manifest(
        encoder=encoder,
        dim=dim,
        count=count,
        index=IndexInfo(plan.type, plan.factory, dict(plan.params), plan.reason, plan.requested),
        sources=(source,),
        shards=shard_counts(emb_dir, names),
        files=sizes,
        checksums=checksums,
        skipped_count=len(skipped),
        has_thumbnails=thumbnails,
        created_at=now_iso(),
        medcap_version=__version__,
        part=part,
    )
    write_manifest(manifest, work)  # last: from here on the directory is an index
    return manifest


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
    if not out.is_dir():
        raise InputError(f"{out} is a file, not an index directory; choose another --out")
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
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


def emb_dir_of(directory: Path) -> Path:
    """The shard folder of an index or work directory."""
    return directory / EMB_DIR
