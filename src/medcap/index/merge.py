"""Join the parts of a `--shard i/n` build into one index directory.

Part i of n holds the shard-sized chunks c with c % n == i, under their global chunk
numbers, so the union of the parts' shards, in name order, is the order a one-machine
build would have written. An image_id indexed by two parts is kept where it comes first
(as a one-machine build keeps the first of duplicate ids). The FAISS indexes are built
afresh from the shards for the merged count, so `auto` plans for the whole index.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from medcap.clock import now_iso
from medcap.config import DEFAULTS, IndexConfig
from medcap.errors import InputError
from medcap.index.finalize import (
    check_replaceable,
    emb_dir_of,
    finalize_index,
    link_or_copy,
    new_manifest,
    partial_dir,
    plan_for,
)
from medcap.index.manifest import (
    Manifest,
    SourceInfo,
    parse_part,
)
from medcap.index.shards import drop_rows, shard_files, shard_ids
from medcap.index.store import IndexDir, open_index
from medcap.locking import output_lock
from medcap.types import Skipped

LOG = logging.getLogger(__name__)


def _check_parts(parts: Sequence[IndexDir]) -> int:
    """Refuse parts that do not belong together; returns n."""
    first = parts[0]
    labels: dict[int, Path] = {}
    n_parts = 0
    for part in parts:
        m = part.manifest
        if not m.part:
            raise InputError(
                f"{part.path} is not part of a sharded build (built without --shard i/n); "
                "use `medcap index add` to extend an index"
            )
        i, n = parse_part(m.part)
        if n_parts and n != n_parts:
            raise InputError(f"{part.path} is part {m.part} but {first.path} is one of {n_parts}")
        n_parts = n
        if m.fingerprint != first.manifest.fingerprint:
            raise InputError(
                f"{part.path} was built with encoder fingerprint {m.fingerprint}, {first.path} "
                f"with {first.manifest.fingerprint}; every part needs the same encoder"
            )
        data, first_data = m.sources[0], first.manifest.sources[0]
        if (data.fingerprint, data.split) != (first_data.fingerprint, first_data.split):
            raise InputError(
                f"{part.path} indexes {data.dataset} [{data.split}] but {first.path} indexes "
                f"{first_data.dataset} [{first_data.split}]; every part needs the same data"
            )
        if i in labels:
            raise InputError(f"{part.path} and {labels[i]} are both part {m.part}")
        labels[i] = part.path
    missing = sorted(set(range(n_parts)) - set(labels))
    if missing:
        raise InputError(
            f"parts {', '.join(f'{i}/{n_parts}' for i in missing)} are missing; pass all "
            f"{n_parts} parts"
        )
    return n_parts


def merge_parts(
    part_dirs: Sequence[str | Path],
    out_dir: str | Path,
    cfg: IndexConfig | None = None,
    *,
    overwrite: bool = False,
    verify: bool | None = None,
) -> IndexDir:
    """Merge every part of a `--shard i/n` build into the index directory `out_dir`.

    Parts that indexed no case are valid and add nothing. `verify` checks each part's
    checksums (default: IndexConfig.verify). Holds the output's lock (medcap.locking).
    """
    cfg = cfg or DEFAULTS.index
    if not part_dirs:
        raise InputError("nothing to merge: pass the part directories")
    out = Path(out_dir)
    with output_lock(out):
        parts = [open_index(p, verify=verify) for p in part_dirs]
        _check_parts(parts)
        work = partial_dir(out)
        check_replaceable(out, overwrite=overwrite)
        if work.exists():
            raise InputError(
                f"{work} exists (an interrupted build or merge); delete it and run again"
            )
        emb_dir = emb_dir_of(work)
        emb_dir.mkdir(parents=True)
        try:
            manifest = _merge_into(work, out, parts, cfg, overwrite=overwrite)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return open_index(out, expected_fingerprint=manifest.fingerprint, verify=False)


def _merge_into(
    work: Path, out: Path, parts: Sequence[IndexDir], cfg: IndexConfig, *, overwrite: bool
) -> Manifest:
    emb_dir = emb_dir_of(work)
    owner = {s.name: p for p in parts for s in p.manifest.shards}
    names = sorted(owner)
    for name in names:
        for file in shard_files(emb_dir_of(owner[name].path), name):
            link_or_copy(file, emb_dir / file.name)
    seen: set[str] = set()
    counts: list[int] = []
    dropped: list[Skipped] = []
    for name in names:
        ids = shard_ids(emb_dir, name)
        count = len(ids)
        repeated = set(ids) & seen
        if repeated:
            dataset = owner[name].manifest.sources[0].dataset
            why = "duplicate image_id (already indexed by another part)"
            skipped = [Skipped(dataset, None, i, why) for i in sorted(repeated)]
            count = drop_rows(emb_dir, name, repeated, skipped)
            dropped += skipped
        seen.update(ids)
        counts.append(count)
    first = parts[0].manifest
    # Every part lists the reader's own skips (empty captions, ...): keep each entry once.
    skipped_all = list(dict.fromkeys([s for p in parts for s in p.skipped()] + dropped))
    data = first.sources[0]
    source = SourceInfo(
        data.dataset, data.fingerprint, data.split, sum(counts), now_iso(), data.kept_columns
    )
    plan = plan_for(source.count, first.dim, cfg)
    thumbs = all(p.manifest.has_thumbnails for p in parts)
    return finalize_index(
        work, out,
        new_manifest(first.encoder, source, plan, thumbnails=thumbs, engine=first.engine),
        names=names, skipped=skipped_all, plan=plan, cfg=cfg, overwrite=overwrite,
    )  # fmt: skip
