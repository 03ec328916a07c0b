"""`index sync`: bring an index up to date with its source (a DICOM folder or server).

Cases that appeared in the source since the build are embedded and added (`add_to_index`);
with `remove_missing`, cases whose id the source no longer lists are withdrawn
(`remove_from_index`). The index is assumed to hold this one source's cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcap.config import IndexConfig
from medcap.errors import InputError
from medcap.index.build import CaseEncoder, add_to_index
from medcap.index.remove import remove_from_index
from medcap.index.shards import Thumbnailer
from medcap.index.store import open_index


@dataclass(frozen=True)
class SyncResult:
    """What a sync changed: cases added, removed, gone but kept, and the final count."""

    added: int
    removed: int
    missing: int
    count: int


def sync_index(
    index_dir: str | Path,
    dataset: Any,
    encoder: CaseEncoder,
    cfg: IndexConfig,
    *,
    remove_missing: bool = False,
    make_thumbnail: Thumbnailer | None = None,
    verify: bool | None = None,
    progress: bool = False,
) -> SyncResult:
    """Add `dataset`'s new cases to the index; withdraw its missing ones when asked."""
    path = Path(index_dir)
    index = open_index(path, expected_fingerprint=encoder.fingerprint, verify=verify)
    split = index.manifest.sources[0].split if index.manifest.sources else cfg.split
    indexed = set(index.image_ids())
    listed = set(dataset.ids(split))
    listed |= {s.image_id for s in dataset.skipped if s.image_id}  # refused, but present
    added = removed = 0
    if listed - indexed:
        fresh = (r for r in dataset.records(split) if r.image_id not in indexed)
        index, added = _add(
            path, fresh, encoder, cfg, dataset_fingerprint=dataset.fingerprint(),
            dataset_name=dataset.name, split=split, progress=progress,
            make_thumbnail=make_thumbnail, source_skipped=(), verify=False,
            kept_columns=dataset.config.keep_columns,
            pseudonym_check=getattr(dataset, "pseudonym_check", ""),
        )  # fmt: skip
    gone = indexed - listed
    if remove_missing and gone:
        index, removed = remove_from_index(path, gone, verify=False)
    return SyncResult(added, removed, 0 if remove_missing else len(gone), len(index))


def _add(path: Path, records: Any, encoder: CaseEncoder, cfg: IndexConfig, **options: Any) -> Any:
    """`add_to_index`, where nothing left to add (every new case refused) is no error."""
    try:
        return add_to_index(path, records, encoder, cfg, **options)
    except InputError as exc:
        if not str(exc).startswith("no new cases to add"):
            raise
        return open_index(path, verify=False), 0
