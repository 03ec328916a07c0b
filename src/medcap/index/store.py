"""IndexDir: open, check and search a finished index directory.

Result order is score descending; scores within `TIE_EPS` of each other are ties and
are ordered by row ascending (the order cases were indexed in). For an exact (flat)
index this holds across the k boundary too: when a tie straddles it, every tied row
is fetched and the lowest rows win, so results do not depend on FAISS's heap order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from medcap.config import DEFAULTS
from medcap.errors import CorruptArtifactError, InputError
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
from medcap.index.searchers import Searcher, make_searcher
from medcap.index.shards import ShardVectors, read_parquet
from medcap.types import Hit, Skipped

LOG = logging.getLogger(__name__)
TIE_EPS = 1e-6  # cosine scores closer than this are ties, ordered by row
Target = Literal["images", "captions"]


def order_candidates(
    rows: NDArray[np.int64], scores: NDArray[np.float32]
) -> list[tuple[int, float]]:
    """Sort (row, score) pairs: score descending, ties (within TIE_EPS) by row ascending."""
    if len(scores) < 2 or bool(np.all(scores[:-1] - scores[1:] > TIE_EPS)):
        return list(zip(rows.tolist(), scores.tolist(), strict=True))  # sorted, no ties: as is
    idx = sorted(range(len(rows)), key=lambda i: (-float(scores[i]), int(rows[i])))
    out: list[tuple[int, float]] = []
    i = 0
    while i < len(idx):
        top = float(scores[idx[i]])
        j = i
        while j < len(idx) and top - float(scores[idx[j]]) <= TIE_EPS:
            j += 1
        out.extend(sorted(((int(rows[t]), float(scores[t])) for t in idx[i:j]), key=lambda p: p[0]))
        i = j
    return out


def _group_top(ordered: list[tuple[int, float]], pos: int) -> float:
    """Highest score of the tie group holding position `pos`."""
    top = ordered[pos][1]
    for _, score in reversed(ordered[:pos]):
        if score - ordered[pos][1] > TIE_EPS:
            break
        top = max(top, score)
    return top


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

    def thumbnail(self, image_id: str) -> bytes | None:
        """The stored thumbnail (PNG bytes) of a case, or None when there is none."""
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
        n = len(self)
        if k > n:
            LOG.warning("note: k=%d is larger than the index (%d cases); returning %d", k, n, n)
            k = n
        excluded = [None if e is None else self.row_of(e) for e in (exclude_ids or [None] * len(q))]
        searcher = self.searcher(target)
        fetch = min(n, k + (1 if any(r is not None for r in excluded) else 0) + 1)
        scores, rows = searcher.search(q, fetch)
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
            if searcher.exact and 0 < need < len(ordered) and _straddles(ordered, need):
                ordered = self._resolve_tie(searcher, q[i], ordered, need, excluded[i])
            results.append(ordered[:need])
        return results

    def _resolve_tie(
        self,
        searcher: Searcher,
        query: NDArray[np.float32],
        ordered: list[tuple[int, float]],
        need: int,
        excluded: int | None,
    ) -> list[tuple[int, float]]:
        """Fetch every row tied with the k-th so ties are ordered by row, not heap order."""
        threshold = _group_top(ordered, need - 1) - 2 * TIE_EPS
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
    ) -> list[list[Hit]]:
        """Top-k cases per query vector.

        queries: (q, d) float32, L2-normalised, from the index's encoder. target: search
        the image vectors ("images") or the caption vectors ("captions"). exclude_ids:
        one image_id (or None) per query whose row is dropped (self-exclusion). k larger
        than the index is clamped with a logged note. Scores are cosine similarities.

        >>> hits = index.search(encoder.encode_texts(["chest CT nodule"]), 5, target="images")
        """
        return [
            [self.hit(row, rank, score) for rank, (row, score) in enumerate(found, start=1)]
            for found in self.search_rows(queries, k, target=target, exclude_ids=exclude_ids)
        ]


def _straddles(ordered: list[tuple[int, float]], need: int) -> bool:
    return ordered[need - 1][1] - ordered[need][1] <= TIE_EPS


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise InputError(f"unknown search target {target!r}; valid: {', '.join(TARGETS)}")


def _check_files(path: Path, manifest: Manifest) -> None:
    required = [*INDEX_FILES.values(), ITEMS_NAME]
    for name in required:
        if name not in manifest.files:
            raise CorruptArtifactError(
                f"{path / 'manifest.json'} does not list {name}; rebuild the index"
            )
    for name, size in manifest.files.items():
        file = path / name
        if not file.exists():
            raise CorruptArtifactError(
                f"{file} is missing; rebuild the index with `medcap index build`"
            )
        actual = file.stat().st_size
        if actual != size:
            raise CorruptArtifactError(
                f"{file} is {actual} bytes but the manifest says {size}: the file is truncated "
                "or was replaced; rebuild the index with `medcap index build`"
            )


def open_index(
    path: str | Path,
    *,
    expected_fingerprint: str | None = None,
    device: str | None = None,
    preload: bool = False,
) -> IndexDir:
    """Open and check an index directory.

    Checks the manifest (format version), the encoder fingerprint against
    `expected_fingerprint` (IndexMismatchError naming both), that every file has the
    size the manifest recorded, and the item count. FAISS files load on first search
    (or now with `preload`). device: "auto" | "cpu" | "cuda[:N]" (default from config).
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
    manifest = read_manifest(path)
    check_fingerprint(manifest, expected_fingerprint, str(path))
    _check_files(path, manifest)
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
