"""IndexDir: open, check and search a finished index directory.

Result order is score descending; scores within `TIE_EPS` of each other are ties and
are ordered by row ascending (the order cases were indexed in). For an exact (flat)
index this holds across the k boundary too: when a tie straddles it, every tied row
is fetched and the lowest rows win, so results do not depend on FAISS's heap order.
Searches may be limited to cases whose metadata match a filter (`where=`, see
medcap.index.filters): up to `IndexConfig.filter_scan_max_rows` kept rows are scored
exactly on the stored vectors, more are searched inside FAISS with an IDSelector, so a
filtered top-k holds k hits whenever k cases match. Damage is caught
by medcap.index.integrity: files on open, impossible scores on search.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from medcap.config import DEFAULTS, current
from medcap.errors import CorruptArtifactError, InputError
from medcap.index.filters import CaseColumns, Filters, scan_rows
from medcap.index.integrity import check_files, check_scores
from medcap.index.manifest import (
    EMB_DIR,
    INDEX_FILES,
    ITEMS_NAME,
    SKIPPED_NAME,
    TARGETS,
    THUMBS_NAME,
    Manifest,
    check_fingerprint,
    read_manifest,
)
from medcap.index.ordering import TIE_EPS, group_top, order_candidates, straddles
from medcap.index.searchers import Searcher, make_searcher
from medcap.index.shards import ShardVectors, read_parquet
from medcap.types import Hit, Skipped

LOG = logging.getLogger(__name__)
Target = Literal["images", "captions"]


class IndexDir:
    """A finished index directory: manifest, two FAISS indexes, items, shards."""

    def __init__(self, path: Path, manifest: Manifest, items: pa.Table, *, device: str) -> None:
        self.path = path
        self.manifest = manifest
        self.device = device
        self._ids: list[str] = items.column("image_id").to_pylist()
        self._captions: list[str] = items.column("caption").to_pylist()
        self._cuis: list[list[str] | None] = items.column("cuis").to_pylist()
        self._splits: list[str | None] = items.column("split").to_pylist()
        self._paths: list[str | None] = items.column("image_path").to_pylist()
        self._extra: list[str | None] = items.column("extra").to_pylist()
        self._row_of: dict[str, int] | None = None
        self._row_fields: dict[int, tuple[Any, ...]] = {}
        self._searchers: dict[str, Searcher] = {}
        self._thumbs: dict[str, bytes | None] | None = None
        self._columns: CaseColumns | None = None
        self._stored: dict[str, ShardVectors] = {}
        self._lock = threading.Lock()  # the app searches one IndexDir from several threads
        # filters keeping more rows than this search inside FAISS (an IDSelector)
        self.filter_scan_max_rows = current().index.filter_scan_max_rows

    def __len__(self) -> int:
        return self.manifest.count

    def __repr__(self) -> str:
        m = self.manifest
        return f"IndexDir({str(self.path)!r}, count={m.count}, type={m.index.type}, dim={m.dim})"

    # ---- rows and items -------------------------------------------------------------
    def image_ids(self) -> list[str]:
        """image_id of every row, in row order."""
        return list(self._ids)

    def row_of(self, image_id: str) -> int | None:
        """The row of `image_id`, or None when it is not indexed."""
        if self._row_of is None:
            self._row_of = {iid: r for r, iid in enumerate(self._ids)}
        return self._row_of.get(image_id)

    def hit(self, row: int, rank: int = 0, score: float = 0.0) -> Hit:
        """The Hit for one row (rank 0 and score 0.0 mean "not a search result")."""
        fields = self._row_fields.get(row)
        if fields is None:  # built once per row; the metadata mapping is shared read-only
            raw = self._extra[row]
            fields = self._row_fields[row] = (
                self._ids[row],
                self._captions[row] or "",
                tuple(self._cuis[row] or ()),
                self._splits[row] or "",
                self._paths[row],
                MappingProxyType(json.loads(raw) if raw else {}),
            )
        return Hit(rank, score, *fields)

    def item(self, image_id: str) -> Hit:
        """The indexed case `image_id` as a Hit with rank 0 and score 0.0."""
        row = self.row_of(image_id)
        if row is None:
            raise InputError(f"image_id {image_id!r} is not in the index {self.path}")
        return self.hit(row)

    @property
    def columns(self) -> CaseColumns:
        """The `split` and metadata columns of the cases (read on first use)."""
        with self._lock:
            if self._columns is None:
                self._columns = CaseColumns(self._splits, self._extra)
            return self._columns

    def column(self, name: str) -> list[str]:
        """Column `name` (`split` or a metadata column) as display strings, in row order."""
        return self.columns.values(name)

    def matching_rows(self, where: Filters | None) -> NDArray[np.int64] | None:
        """Rows whose columns take one of the values `where` accepts (None: no filter)."""
        return self.columns.matching_rows(where)

    def vectors(self, rows: NDArray[np.int64], target: Target) -> NDArray[np.float32]:
        """Stored (len(rows), d) unit float32 vectors: the ones the FAISS index was built from."""
        _check_target(target)
        with self._lock:
            stored = self._stored.get(target)
            if stored is None:
                stored = self._stored[target] = self._shard_vectors(target)
        return stored.gather(np.asarray(rows, dtype=np.int64))

    def thumbnail(self, image_id: str) -> bytes | None:
        """The stored thumbnail (JPEG bytes) of a case, or None when there is none."""
        if not self.manifest.has_thumbnails:
            return None
        if self._thumbs is None:
            table = read_parquet(self.path / THUMBS_NAME)
            self._thumbs = dict(
                zip(
                    table.column("image_id").to_pylist(),
                    table.column("thumbnail").to_pylist(),
                    strict=True,
                )
            )
        return self._thumbs.get(image_id)

    def skipped(self) -> list[Skipped]:
        """Cases left out of the index, with why."""
        path = self.path / SKIPPED_NAME
        if not path.exists():
            return []
        return [
            Skipped(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()
        ]

    def embeddings(self, target: Target) -> NDArray[np.float32]:
        """The indexed vectors (n, d), float32, unit length, row order (as FAISS holds them)."""
        _check_target(target)
        return self._shard_vectors(target).all()

    # ---- search ---------------------------------------------------------------------
    def _shard_vectors(self, target: str) -> ShardVectors:
        return ShardVectors(self.path / EMB_DIR, [s.name for s in self.manifest.shards], target)

    def searcher(self, target: Target) -> Searcher:
        """The loaded search back-end for `target` (loaded on first use)."""
        _check_target(target)
        if target not in self._searchers:
            info = self.manifest.index
            self._searchers[target] = make_searcher(
                self.path / INDEX_FILES[target],
                index_type=info.type,
                params=info.params,
                device=self.device,
                shard_vectors=self._shard_vectors(target) if info.type == "ivfpq" else None,
                vectors_for_torch=lambda: self.embeddings(target),
                factory=info.factory,
            )
            searcher = self._searchers[target]
            found, dim = searcher.size()
            if (found, dim) != (self.manifest.count, self.manifest.dim):
                del self._searchers[target]
                raise CorruptArtifactError(
                    f"{self.path / INDEX_FILES[target]} holds {found} vectors of dimension {dim} "
                    f"but the manifest says {self.manifest.count} x {self.manifest.dim}; "
                    "rebuild the index"
                )
            LOG.debug("loaded %s index of %s with %s", info.type, target, searcher.name)
        return self._searchers[target]

    def load(self) -> None:
        """Load both FAISS indexes now (reports damage at once instead of at first search)."""
        for target in TARGETS:
            self.searcher(target)  # type: ignore[arg-type]

    def search_rows(
        self,
        queries: NDArray[np.float32],
        k: int,
        *,
        target: Target,
        exclude_ids: Sequence[str | None] | None = None,
        where: Filters | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per query; see `search`."""
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.manifest.dim:
            raise InputError(
                f"query vectors have dimension {q.shape[1]} but the index {self.path} has "
                f"{self.manifest.dim}; encode queries with the index's encoder"
            )
        if k < 1:
            raise InputError(f"k must be at least 1 (got {k})")
        if exclude_ids is not None and len(exclude_ids) != len(q):
            raise InputError(f"exclude_ids has {len(exclude_ids)} entries for {len(q)} queries")
        _check_target(target)
        # The one place filters enter a search (inside it, not after it).
        kept = self.matching_rows(where)
        if kept is not None:
            return self._search_within(q, k, target, kept, exclude_ids)
        n = len(self)
        if n == 0:
            return [[] for _ in range(len(q))]  # an empty part of a sharded build
        if k > n:
            LOG.warning("note: k=%d is larger than the index (%d cases); returning %d", k, n, n)
            k = n
        excluded = [None if e is None else self.row_of(e) for e in (exclude_ids or [None] * len(q))]
        searcher = self.searcher(target)
        fetch = min(n, k + (1 if any(r is not None for r in excluded) else 0) + 1)
        scores, rows = searcher.search(q, fetch)
        check_scores(q, scores, rows, self.manifest.index, self.path / INDEX_FILES[target])
        # Most result lists are full and tie-free: those skip the per-query sort.
        clean = np.all(rows >= 0, axis=1) & np.all(scores[:, :-1] - scores[:, 1:] > TIE_EPS, axis=1)
        rows_list, scores_list = rows.tolist(), scores.tolist()
        results = []
        for i in range(len(q)):
            drop = -2 if excluded[i] is None else excluded[i]
            if clean[i]:
                pairs = zip(rows_list[i], scores_list[i], strict=True)
                ordered = [(r, sc) for r, sc in pairs if r != drop]
            else:
                keep = (rows[i] >= 0) & (rows[i] != drop)
                ordered = order_candidates(rows[i][keep], scores[i][keep])
            need = min(k, n - (excluded[i] is not None))
            if searcher.exact and 0 < need < len(ordered) and straddles(ordered, need):
                ordered = self._resolve_tie(searcher, q[i], ordered, need, excluded[i])
            results.append(ordered[:need])
        return results

    def _search_within(
        self,
        queries: NDArray[np.float32],
        k: int,
        target: Target,
        rows: NDArray[np.int64],
        exclude_ids: Sequence[str | None] | None,
    ) -> list[list[tuple[int, float]]]:
        """Top-k among `rows` per query: few rows are scanned exactly from the stored
        vectors (see filters); many are searched inside FAISS with an IDSelector, and a
        query that comes back short of k (an approximate index whose probed lists or graph
        walk met too few kept rows) or with a tie cut at k (flat) is scanned after all."""
        drops = [
            None if own is None else self.row_of(own)
            for own in (exclude_ids if exclude_ids is not None else [None] * len(queries))
        ]
        found: list[list[tuple[int, float]] | None] = [None] * len(queries)
        searcher = self.searcher(target) if len(rows) > self.filter_scan_max_rows else None
        answer = None
        if searcher is not None:
            fetch = min(len(rows), k + 2)  # room for the dropped row and a tie check
            answer = searcher.search_in(queries, fetch, rows)
        if searcher is not None and answer is not None:
            scores, got = answer
            check_scores(queries, scores, got, self.manifest.index, self.path / INDEX_FILES[target])
            for i in range(len(queries)):
                valid = (got[i] >= 0) & (got[i] != (-2 if drops[i] is None else drops[i]))
                ordered = order_candidates(got[i][valid], scores[i][valid])
                need = min(k, len(rows) - _holds(rows, drops[i]))
                cut_tie = searcher.exact and len(ordered) > need > 0 and straddles(ordered, need)
                if len(ordered) >= need and not cut_tie:
                    found[i] = ordered[:need]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            vectors = self.vectors(rows, target)
            for i in todo:
                keep = rows != drops[i] if drops[i] is not None else slice(None)
                found[i] = scan_rows(vectors[keep], rows[keep], queries[i], k)
        return [f or [] for f in found]

    def _resolve_tie(
        self,
        searcher: Searcher,
        query: NDArray[np.float32],
        ordered: list[tuple[int, float]],
        need: int,
        excluded: int | None,
    ) -> list[tuple[int, float]]:
        """Fetch every row tied with the k-th so ties are ordered by row, not heap order."""
        threshold = group_top(ordered, need - 1) - 2 * TIE_EPS
        scores, rows = searcher.rows_above(query, threshold)
        keep = rows != (-2 if excluded is None else excluded)
        return order_candidates(rows[keep], scores[keep])

    def search(
        self,
        queries: NDArray[np.float32],
        k: int,
        *,
        target: Target,
        exclude_ids: Sequence[str | None] | None = None,
        where: Filters | None = None,
    ) -> list[list[Hit]]:
        """Top-k cases per query vector.

        queries: (q, d) float32, L2-normalised, from the index's encoder. target: search
        the image vectors ("images") or the caption vectors ("captions"). exclude_ids:
        one image_id (or None) per query whose row is dropped (self-exclusion). where:
        only cases whose metadata match (`{"modality": "CT", "split": ["train"]}`, see
        medcap.index.filters); fewer than k come back when fewer match. k larger than the
        index is clamped with a logged note. Scores are cosine similarities.

        >>> hits = index.search(encoder.encode_texts(["chest CT nodule"]), 5, target="images")
        """
        found_rows = self.search_rows(
            queries, k, target=target, exclude_ids=exclude_ids, where=where
        )
        return [
            [self.hit(row, rank, score) for rank, (row, score) in enumerate(found, start=1)]
            for found in found_rows
        ]


def _holds(rows: NDArray[np.int64], row: int | None) -> int:
    """1 when the ascending `rows` hold `row`, else 0."""
    if row is None:
        return 0
    at = int(np.searchsorted(rows, row))
    return int(at < len(rows) and int(rows[at]) == row)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise InputError(f"unknown search target {target!r}; valid: {', '.join(TARGETS)}")


def open_index(
    path: str | Path,
    *,
    expected_fingerprint: str | None = None,
    device: str | None = None,
    preload: bool = False,
    verify: bool | None = None,
) -> IndexDir:
    """Open and check an index directory.

    Checks the manifest (format version), the encoder fingerprint against
    `expected_fingerprint` (IndexMismatchError naming both), that every file has the
    size and (with `verify`, default IndexConfig.verify) the checksum the manifest
    recorded, and the item count. Without `verify` only searches guard against damage,
    by refusing scores no pair of unit vectors can have. FAISS files load on first
    search (or now with `preload`). device: "auto" | "cpu" | "cuda[:N]" (default from
    config).
    """
    from medcap.index.finalize import partial_dir

    path = Path(path)
    if path.name.endswith(".partial"):
        raise InputError(
            f"{path} is an unfinished build; finish it by rerunning the build with --resume"
        )
    if not path.is_dir():
        hint = (
            f"; an unfinished build is in {partial_dir(path)}: rerun the build with --resume"
            if partial_dir(path).exists()
            else "; build one with `medcap index build`"
        )
        raise InputError(f"index directory {path} does not exist{hint}")
    if not (path / "manifest.json").exists():
        raise InputError(
            f"{path} is not an index directory (no manifest.json); "
            "build one with `medcap index build`"
        )
    verify = DEFAULTS.index.verify if verify is None else verify
    manifest = read_manifest(path, verify=verify)
    check_fingerprint(manifest, expected_fingerprint, str(path))
    check_files(path, manifest, verify=verify)
    items = read_parquet(
        path / ITEMS_NAME, columns=["image_id", "caption", "cuis", "split", "image_path", "extra"]
    )
    if items.num_rows != manifest.count:
        raise CorruptArtifactError(
            f"{path / ITEMS_NAME} has {items.num_rows} rows but the manifest says "
            f"{manifest.count}; rebuild the index"
        )
    index = IndexDir(path, manifest, items, device=device or DEFAULTS.index.search_device)
    if preload:
        index.load()
    return index
