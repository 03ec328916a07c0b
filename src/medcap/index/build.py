"""Build an index directory from records, resumably; append cases to one.

Records stream through in shards of `IndexConfig.shard_size` cases: each shard is
encoded, written under `<out>.partial/emb/` and forgotten, so memory stays bounded by
one shard whatever the dataset size. The FAISS files, items and manifest are written
from the shards at the end, then the work directory is renamed to `<out>`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medcap.atomic import write_json_atomic
from medcap.clock import now_iso
from medcap.config import DEFAULTS, IndexConfig
from medcap.errors import InputError
from medcap.index.chunks import CaseEncoder, LocalEngine, ShardEngine, encode_all
from medcap.index.finalize import (
    check_replaceable,
    emb_dir_of,
    finalize_index,
    link_or_copy,
    new_manifest,
    partial_dir,
    plan_for,
    swap_into_place,
)
from medcap.index.manifest import (
    MANIFEST_NAME,
    EncoderInfo,
    SourceInfo,
    parse_part,
)
from medcap.index.shards import Thumbnailer, remove_shard, shard_files
from medcap.index.store import IndexDir, open_index
from medcap.locking import output_lock
from medcap.types import Record, Skipped

__all__ = ["CaseEncoder", "ShardEngine", "add_to_index", "build_index"]

LOG = logging.getLogger(__name__)
STATE_NAME = "build.json"  # the work directory's build settings, checked on --resume


def _checkpoint_path(spec: str) -> str | None:
    return os.path.abspath(spec) if os.path.isfile(spec) else None


def _check_state(work: Path, state: dict[str, Any]) -> None:
    path = work / STATE_NAME
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("fingerprint", "shard_size", "dataset_fingerprint", "split", "part"):
            if (old.get(key) or "") != (state.get(key) or ""):
                raise InputError(
                    f"{work} was started with {key}={old.get(key)!r}, not {state.get(key)!r}; "
                    "resume with the same settings or delete it and build again"
                )
    else:
        write_json_atomic(path, state)


def build_index(
    records: Iterable[Record],
    encoder: CaseEncoder,
    out_dir: str | Path,
    cfg: IndexConfig | None = None,
    *,
    dataset_fingerprint: str = "",
    dataset_name: str = "",
    split: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    total: int | None = None,
    make_thumbnail: Thumbnailer | None = None,
    source_skipped: Sequence[Skipped] | None = None,
    part: str = "",
    kept_columns: Sequence[str] | None = None,
    engine: ShardEngine | None = None,
    pseudonym_check: str = "",
) -> IndexDir:
    """Embed `records` with `encoder` and write the index directory `out_dir`.

    Writes into `<out_dir>.partial/` and renames it when complete; `resume` continues an
    interrupted build from its finished shards (each verified against its checksums).
    A failure that leaves nothing to resume (no complete shard, or no case at all)
    removes the work directory. `source_skipped` (e.g. a dataset's `.skipped` list, read
    after iteration) is added to the skipped list. `part` "i/n" indexes every n-th
    shard-sized chunk from the i-th: a searchable index of its own (empty when no chunk
    falls to it), which `merge_parts` joins with the other parts. `kept_columns` (the
    reader's `DataConfig.keep_columns`) is recorded in the manifest. `engine` embeds the
    chunks (default: `LocalEngine`, this process; `medcap.dist` runs one on a Ray cluster);
    its name is recorded in the manifest, as is `pseudonym_check` (a DICOM source's key check
    value). Holds the output's lock (medcap.locking).

    >>> enc = load_encoder("medcap-tiny")
    >>> index = build_index(dataset.records("train"), enc, "idx", DEFAULTS.index)
    """
    cfg = cfg or DEFAULTS.index
    out = Path(out_dir)
    split = split if split is not None else cfg.split
    part_of = parse_part(part) if part else None
    engine = engine or LocalEngine(encoder)
    with output_lock(out):
        work = partial_dir(out)
        check_replaceable(out, overwrite=overwrite)
        if work.exists() and not resume:
            raise InputError(
                f"{work} holds an unfinished build; pass --resume to continue it or delete it"
            )
        if resume and (work / MANIFEST_NAME).exists():  # killed between manifest and rename
            swap_into_place(work, out, overwrite=overwrite)
            return open_index(out, expected_fingerprint=encoder.fingerprint)
        emb_dir = emb_dir_of(work)
        emb_dir.mkdir(parents=True, exist_ok=True)
        thumbs = make_thumbnail is not None and cfg.thumbnail_size > 0
        _check_state(
            work,
            {
                "spec": encoder.spec,
                "fingerprint": encoder.fingerprint,
                "shard_size": cfg.shard_size,
                "dataset_fingerprint": dataset_fingerprint,
                "split": split,
                "part": part,
                "started_at": now_iso(),
            },
        )
        try:
            names, count, skipped = encode_all(
                records, engine, emb_dir, dim=encoder.embed_dim, first=0,
                shard_size=cfg.shard_size, batch_size=cfg.batch_size, seen=set(),
                source=dataset_name, resume=resume,
                make_thumbnail=make_thumbnail if thumbs else None, progress=progress,
                total=total, part=part_of,
            )  # fmt: skip
        except BaseException:
            if not any(emb_dir.glob("shard_*.json")):
                shutil.rmtree(work, ignore_errors=True)  # nothing a resume could reuse
            raise
        skipped.extend(source_skipped or ())
        for stale in sorted(emb_dir.glob("shard_*.json")):  # shards of a longer earlier input
            if stale.stem.removeprefix("shard_") not in names:
                remove_shard(emb_dir, stale.stem.removeprefix("shard_"))
        if count == 0 and part_of is None:
            shutil.rmtree(work, ignore_errors=True)  # a resume would find no case either
            raise InputError(
                f"no cases to index from {dataset_name or 'the records'} (split {split!r}); "
                f"{len(skipped)} skipped; check the data"
            )
        encoder_info = EncoderInfo(
            encoder.spec, encoder.fingerprint, encoder.embed_dim, _checkpoint_path(encoder.spec)
        )
        kept = None if kept_columns is None else tuple(kept_columns)
        source = SourceInfo(
            dataset_name, dataset_fingerprint, split, count, now_iso(), kept, pseudonym_check
        )
        plan = plan_for(count, encoder.embed_dim, cfg)
        finalize_index(
            work, out,
            new_manifest(encoder_info, source, plan, thumbnails=thumbs, part=part,
                         engine=engine.name),
            names=names, skipped=skipped, plan=plan, cfg=cfg, transient=[STATE_NAME],
            overwrite=overwrite,
        )  # fmt: skip
        return open_index(out, expected_fingerprint=encoder.fingerprint, verify=False)


def add_to_index(
    index_dir: str | Path,
    records: Iterable[Record],
    encoder: CaseEncoder,
    cfg: IndexConfig | None = None,
    *,
    dataset_fingerprint: str = "",
    dataset_name: str = "",
    split: str = "",
    progress: bool = False,
    total: int | None = None,
    make_thumbnail: Thumbnailer | None = None,
    source_skipped: Sequence[Skipped] | None = None,
    verify: bool | None = None,
    kept_columns: Sequence[str] | None = None,
    pseudonym_check: str = "",
) -> tuple[IndexDir, int]:
    """Append new cases to an index built with the same encoder; returns (index, added).

    Cases whose image_id is already indexed are skipped. The new directory is written
    next to the old one and swapped in, so the index is never half-updated. `verify`
    checks the existing files' checksums first (default: IndexConfig.verify). Holds the
    index's lock (medcap.locking) throughout.
    """
    cfg = cfg or DEFAULTS.index
    path = Path(index_dir)
    with output_lock(path):
        old = open_index(path, expected_fingerprint=encoder.fingerprint, verify=verify)
        if old.manifest.part:
            raise InputError(
                f"{path} is part {old.manifest.part} of a sharded build; merge the parts with "
                "`medcap index merge` and add to the merged index"
            )
        work = partial_dir(path)
        if work.exists():
            raise InputError(
                f"{work} exists (an interrupted build or add); delete it and run again"
            )
        emb_dir = emb_dir_of(work)
        emb_dir.mkdir(parents=True)
        try:
            old_names = [s.name for s in old.manifest.shards]
            for name in old_names:
                for file in shard_files(emb_dir_of(path), name):
                    link_or_copy(file, emb_dir / file.name)
            thumbs = old.manifest.has_thumbnails
            new_names, added, skipped = encode_all(
                records, LocalEngine(encoder), emb_dir, dim=encoder.embed_dim,
                first=max(int(n) for n in old_names) + 1, shard_size=cfg.shard_size,
                batch_size=cfg.batch_size, seen=set(old.image_ids()), source=dataset_name,
                resume=False, make_thumbnail=make_thumbnail if thumbs else None,
                progress=progress, total=total,
            )  # fmt: skip
            skipped.extend(source_skipped or ())
            if added == 0:
                raise InputError(
                    f"no new cases to add from {dataset_name or 'the records'}: all were already "
                    f"indexed or skipped ({len(skipped)} skipped)"
                )
            m = old.manifest
            kept = None if kept_columns is None else tuple(kept_columns)
            source = SourceInfo(
                dataset_name, dataset_fingerprint, split, added, now_iso(), kept, pseudonym_check
            )
            grown = dataclasses.replace(m, count=m.count + added, sources=(*m.sources, source))
            finalize_index(
                work, path, grown, names=old_names + new_names,
                skipped=[*old.skipped(), *skipped], extend=new_names, overwrite=True,
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return open_index(path, expected_fingerprint=encoder.fingerprint, verify=False), added
