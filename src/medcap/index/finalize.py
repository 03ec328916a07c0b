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
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medcap import __version__
from medcap.checksums import file_checksum
from medcap.clock import now_iso
from medcap.config import IndexConfig, dump_config
from medcap.errors import InputError
from medcap.index import faiss_ops
from medcap.index.manifest import (
    EMB_DIR,
    FORMAT_VERSION,
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
    refill: bool = False,
) -> None:
    """Write image.faiss and caption.faiss from the shards `names` (in row order).

    With `base` (an existing index directory), its FAISS files are extended with the
    shards instead of being rebuilt, which keeps a trained IVF-PQ quantizer; with `refill`
    too, they are emptied first (keeping that training) and filled from the shards.
    """
    for target in TARGETS:
        if refill and plan.type == "hnsw":  # a graph cannot be emptied: a new one is built
            index = faiss_ops.new_index(plan.factory, dim)
        elif base is not None:
            index = faiss_ops.read_index(base / INDEX_FILES[target])
            if refill:
                index = faiss_ops.emptied(index)
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


def plan_for(count: int, dim: int, cfg: IndexConfig) -> IndexPlan:
    """The index type for `count` vectors of `dim` (a flat one for an empty part)."""
    if count:
        plan = plan_index(count, dim, cfg)
    else:
        reason = "empty part of a sharded build: no case fell to it (merge plans the whole index)"
        plan = IndexPlan("flat", "Flat", {}, reason, cfg.index_type)
    LOG.debug("index type %s (%s): %s", plan.type, plan.factory, plan.reason)
    return plan


def new_manifest(
    encoder: EncoderInfo,
    source: SourceInfo,
    plan: IndexPlan,
    *,
    thumbnails: bool,
    part: str = "",
    engine: str = "local",
) -> Manifest:
    """The manifest of a newly built or merged index of `source.count` cases;
    `finalize_index` fills in its shards, files, checksums and skipped count."""
    return Manifest(
        encoder=encoder,
        dim=encoder.embed_dim,
        count=source.count,
        index=IndexInfo(plan.type, plan.factory, dict(plan.params), plan.reason, plan.requested),
        sources=(source,),
        shards=(),
        files={},
        has_thumbnails=thumbnails,
        created_at=now_iso(),
        part=part,
        engine=engine,
    )


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
    manifest: Manifest,
    *,
    names: Sequence[str],
    skipped: Sequence[Skipped],
    plan: IndexPlan | None = None,
    cfg: IndexConfig | None = None,
    extend: Sequence[str] | None = None,
    refill: bool = False,
    transient: Sequence[str] = (),
    overwrite: bool = False,
) -> Manifest:
    """Write the finished index in `work` from its complete shards `names` and rename it to `out`.

    The one finalise sequence of build, add and merge: FAISS files (planned by `plan`,
    default `manifest.index`), items (and thumbnails when `manifest.has_thumbnails`), the
    skipped list, `cfg` as config.json; `transient` files (work-directory bookkeeping) are
    removed; then, last, `manifest` completed with the shard counts, skipped count and the
    size and checksum of every file. `extend` (the new shard names) adds only those shards
    to the FAISS files of the index at `out` instead of rebuilding them, which keeps a
    trained IVF-PQ quantizer; `refill` refills the FAISS files of `out` with all of `names`
    (their training kept: index remove). A failed swap leaves the old index at `out`.
    """
    emb_dir = emb_dir_of(work)
    if refill:
        write_faiss(work, emb_dir, names, manifest.index, manifest.dim, base=out, refill=True)
    elif extend is not None:
        write_faiss(work, emb_dir, extend, manifest.index, manifest.dim, base=out)
    else:
        write_faiss(work, emb_dir, names, plan or manifest.index, manifest.dim)
    write_items(work, emb_dir, names, thumbnails=manifest.has_thumbnails)
    write_skipped(work, skipped)
    if cfg is not None:
        dump_config(cfg, work / "config.json")  # the resolved IndexConfig of this index
    for name in transient:
        (work / name).unlink(missing_ok=True)
    sizes, checksums = describe_files(work)
    final = replace(
        manifest,
        shards=shard_counts(emb_dir, names),
        files=sizes,
        checksums=checksums,
        skipped_count=len(skipped),
        format_version=FORMAT_VERSION,
        medcap_version=__version__,
    )
    write_manifest(final, work)  # last: from here on the directory is an index
    swap_into_place(work, out, overwrite=overwrite)
    return final
