"""Withdraw cases from an index directory: `index remove` and `index sync --remove-missing`.

The cases leave both FAISS indexes, items.parquet, thumbnails.parquet and the embedding
shards. Like `index add`, the new directory is written beside the old one (shards
hard-linked, the affected ones rewritten without the cases) and swapped in, so a reader
sees the old index or the new one, never a mix. The FAISS files are refilled from the
shards: emptied with their training kept (IVF centroids and PQ codebooks are not retrained),
then every remaining vector is added in row order; an HNSW graph, which cannot drop nodes,
is built again. The manifest records how many cases were removed and when,
never which: their ids may be all a withdrawal request must not leave behind.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path

from medcap.clock import now_iso
from medcap.errors import InputError
from medcap.index.finalize import emb_dir_of, finalize_index, link_or_copy, partial_dir
from medcap.index.manifest import RemovalInfo
from medcap.index.shards import drop_rows, remove_shard, shard_files, shard_ids
from medcap.index.store import IndexDir, open_index
from medcap.locking import output_lock

_CARRIED = ("config.json",)  # files of the old directory that finalize does not rewrite


def remove_from_index(
    index_dir: str | Path, image_ids: Iterable[str], *, verify: bool | None = None
) -> tuple[IndexDir, int]:
    """Remove the cases `image_ids` from the index at `index_dir`; returns (index, removed).

    Ids that are not indexed are ignored (a withdrawal may be repeated); none found at all
    is an InputError. Holds the index's lock (medcap.locking) throughout.

    >>> index, removed = remove_from_index("idx", ["se-3f9a..."])
    """
    path = Path(index_dir)
    wanted = {i.strip() for i in image_ids if i and i.strip()}
    if not wanted:
        raise InputError("no case ids to remove; pass --ids ID ... or --ids-file FILE")
    with output_lock(path):
        old = open_index(path, verify=verify)
        m = old.manifest
        if m.part:
            raise InputError(
                f"{path} is part {m.part} of a sharded build; merge the parts first "
                "(`medcap index merge`) and remove from the merged index"
            )
        present = {i for i in wanted if old.row_of(i) is not None}
        if not present:
            raise InputError(
                f"none of the {len(wanted)} ids is in {path}; check the ids (`medcap search "
                "--json` shows them)"
            )
        if len(present) == m.count:
            raise InputError(
                f"removing {len(present)} ids would leave {path} empty; delete the directory "
                "instead"
            )
        work = partial_dir(path)
        if work.exists():
            raise InputError(
                f"{work} exists (an interrupted build or add); delete it and run again"
            )
        emb_dir = emb_dir_of(work)
        emb_dir.mkdir(parents=True)
        try:
            names = []
            for shard in m.shards:
                for file in shard_files(emb_dir_of(path), shard.name):
                    link_or_copy(file, emb_dir / file.name)
                if (
                    present.isdisjoint(shard_ids(emb_dir, shard.name))
                    or drop_rows(emb_dir, shard.name, present, ()) > 0
                ):
                    names.append(shard.name)
                else:
                    remove_shard(emb_dir, shard.name)
            for name in _CARRIED:
                if (path / name).exists():
                    shutil.copy2(path / name, work / name)
            shrunk = dataclasses.replace(
                m,
                count=m.count - len(present),
                removals=(*m.removals, RemovalInfo(len(present), now_iso())),
            )
            skipped = [s for s in old.skipped() if s.image_id not in present]
            finalize_index(
                work, path, shrunk, names=names, skipped=skipped, refill=True, overwrite=True
            )
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return open_index(path, expected_fingerprint=m.fingerprint, verify=False), len(present)
