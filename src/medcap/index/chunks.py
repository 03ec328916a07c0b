"""Records -> complete float16 shards: chunking, resume checks, and the engines that embed.

A build cuts its records into chunks of `IndexConfig.shard_size` cases; chunk c becomes
shard c. A chunk whose shard is already complete (on resume: checksums verified, same input
ids) is reused; every other chunk goes to a `ShardEngine`, which embeds it and hands the
result to `write` once per chunk, in any order. `LocalEngine` embeds in this process;
`medcap.dist` embeds on a Ray cluster. Both write the same shards because chunking, the
duplicate rule, the resume checks and the shard writer are these functions, shared.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from medcap.errors import InputError
from medcap.index.shards import (
    Thumbnailer,
    ids_digest,
    read_shard_meta,
    remove_shard,
    shard_ids,
    shard_name,
    shard_problem,
    shard_skipped,
    write_shard,
)
from medcap.types import Record, Skipped

LOG = logging.getLogger(__name__)


class CaseEncoder(Protocol):
    """What the index needs from an encoder (medcap.encoder.Encoder satisfies it)."""

    @property
    def spec(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def embed_dim(self) -> int: ...

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]: ...


@dataclass
class Chunk:
    """One shard's input: `records` in order, of which `fresh` are to be embedded (the
    others repeat an image_id already indexed and are listed in `skipped`)."""

    name: str
    records: list[Record]
    fresh: list[Record]
    skipped: list[Skipped]


@dataclass
class EncodedChunk:
    """What an engine made of a chunk's fresh records: the kept ones (decodable), in order,
    with their vectors and thumbnails, and the ones it skipped."""

    kept: list[Record]
    image_emb: NDArray[np.float32]
    caption_emb: NDArray[np.float32]
    thumbnails: list[bytes | None]
    skipped: list[Skipped]


ShardWriter = Callable[[Chunk, EncodedChunk], None]


class ShardEngine(Protocol):
    """Embeds chunks and calls `write(chunk, encoded)` once for each, in any order."""

    @property
    def name(self) -> str: ...  # recorded in the manifest ("local", "ray")

    @property
    def progress_every_s(self) -> float | None: ...  # progress log lines (None: none)

    def run(
        self,
        chunks: Iterable[Chunk],
        write: ShardWriter,
        *,
        batch_size: int,
        make_thumbnail: Thumbnailer | None,
    ) -> None: ...


def encode_chunk(
    chunk: Chunk, encoder: CaseEncoder, *, batch_size: int, make_thumbnail: Thumbnailer | None
) -> EncodedChunk:
    """Embed a chunk's fresh records in this process."""
    empty = np.zeros((0, encoder.embed_dim), dtype=np.float32)
    if not chunk.fresh:
        return EncodedChunk([], empty, empty, [], [])
    kept, img, cap, bad = encoder.encode_cases(chunk.fresh, batch_size=batch_size, progress=False)
    thumbs = [make_thumbnail(r) if make_thumbnail else None for r in kept]
    return EncodedChunk(kept, img, cap, thumbs, bad)


@dataclass
class LocalEngine:
    """Embeds chunk after chunk in this process."""

    encoder: CaseEncoder
    name: str = "local"
    progress_every_s: float | None = None

    def run(
        self,
        chunks: Iterable[Chunk],
        write: ShardWriter,
        *,
        batch_size: int,
        make_thumbnail: Thumbnailer | None,
    ) -> None:
        for chunk in chunks:
            enc = encode_chunk(
                chunk, self.encoder, batch_size=batch_size, make_thumbnail=make_thumbnail
            )
            write(chunk, enc)


def chunked(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of `size` records (the last one shorter)."""
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def reusable_shard(
    emb_dir: Path, name: str, chunk: Sequence[Record], *, resume: bool
) -> dict[str, Any] | None:
    """The meta of shard `name` when a resumed build can keep it, else None.

    A damaged shard is rebuilt (logged); one built from other input ids is refused.
    """
    meta = read_shard_meta(emb_dir, name) if resume else None
    if meta is None:
        return None
    problem = shard_problem(emb_dir, name, meta)
    if problem is not None:
        LOG.warning("resume: shard %s in %s is damaged (%s); embedding it again",
                    name, emb_dir, problem)  # fmt: skip
        return None
    if meta["ids_digest"] != ids_digest([r.image_id for r in chunk]):
        raise InputError(
            f"shard {name} in {emb_dir} was built from other records than the data now given "
            "(different data, split or order); delete the .partial directory and build again"
        )
    LOG.debug("resume: shard %s is complete (%d cases)", name, meta["count"])
    return meta


def fresh_chunk(name: str, records: list[Record], seen: set[str], source: str) -> Chunk:
    """The chunk of `records`: ids in `seen` (already indexed) are skipped, the rest join it."""
    fresh, skipped = [], []
    for r in records:
        if r.image_id in seen:
            reason = "duplicate image_id (already indexed)"
            skipped.append(Skipped(source, None, r.image_id, reason))
        else:
            seen.add(r.image_id)
            fresh.append(r)
    return Chunk(name, records, fresh, skipped)


class BuildProgress:
    """Cases done, cases/s and ETA on the driver: a tqdm bar on a terminal, and a log line
    every `every_s` seconds when set (cluster jobs often run without a terminal). The rate
    counts embedded cases from the first embedded chunk on, so start-up (a cluster joining,
    models loading) and reused shards do not distort it."""

    def __init__(self, total: int | None, *, bar: bool, every_s: float | None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="case", desc="indexing", disable=not bar)
        self.total, self.done, self.embedded = total, 0, 0
        self.every_s = every_s
        self.first: tuple[float, int] | None = None  # (time, embedded) at the first chunk
        self.last = time.perf_counter()
        self.logged = -1

    def update(self, cases: int, *, embedded: bool) -> None:
        """`cases` more are done; `embedded` (not reused from a resumed shard) sets the rate."""
        self.bar.update(cases)
        self.done += cases
        now = time.perf_counter()
        if embedded:
            self.embedded += cases
            self.first = self.first or (now, self.embedded)
        if self.every_s is not None and now - self.last >= self.every_s:
            self._log(now)

    def _log(self, now: float) -> None:
        self.last, self.logged = now, self.done
        LOG.info("%s", self.line(now))

    def rate(self, now: float) -> float:
        """Embedded cases per second since the first embedded chunk (0 until a second one)."""
        if self.first is None or now <= self.first[0]:
            return 0.0
        return (self.embedded - self.first[1]) / (now - self.first[0])

    def line(self, now: float | None = None) -> str:
        """e.g. "indexed 4096/80000 cases (5.1%), 812.0 cases/s, ETA 1m31s"."""
        rate = self.rate(time.perf_counter() if now is None else now)
        speed = f", {rate:.1f} cases/s" if rate > 0 else ""
        if not self.total:
            return f"indexed {self.done} cases{speed}"
        left = max(self.total - self.done, 0)
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left else ""
        share = f"{100 * self.done / self.total:.1f}%"
        return f"indexed {self.done}/{self.total} cases ({share}){speed}{eta}"

    def close(self) -> None:
        self.bar.close()
        if self.every_s is not None and self.logged != self.done:
            self._log(time.perf_counter())


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def encode_all(
    records: Iterable[Record],
    engine: ShardEngine,
    emb_dir: Path,
    *,
    dim: int,
    first: int,
    shard_size: int,
    batch_size: int,
    seen: set[str],
    source: str,
    resume: bool,
    make_thumbnail: Thumbnailer | None,
    progress: bool,
    total: int | None,
    part: tuple[int, int] | None = None,
) -> tuple[list[str], int, list[Skipped]]:
    """Stream records into shards first, first+1, ...; returns (names, cases, skipped).

    Complete shards are reused on resume. With `part` (i, n), only chunks c with
    c % n == i are encoded; shard names keep the global chunk number, so the parts'
    shards interleave back into one order on merge.
    """
    names: list[str] = []
    meter = BuildProgress(total, bar=progress, every_s=engine.progress_every_s)

    def pending() -> Iterator[Chunk]:
        for i, chunk in enumerate(chunked(records, shard_size), start=first):
            if part is not None and (i - first) % part[1] != part[0]:
                meter.update(len(chunk), embedded=False)
                continue  # another part's chunk
            name = shard_name(i)
            names.append(name)
            if reusable_shard(emb_dir, name, chunk, resume=resume) is not None:
                seen.update(shard_ids(emb_dir, name))
                meter.update(len(chunk), embedded=False)
                continue
            remove_shard(emb_dir, name)
            yield fresh_chunk(name, chunk, seen, source)

    def write(chunk: Chunk, enc: EncodedChunk) -> None:
        for failed in {x.image_id for x in chunk.fresh} - {x.image_id for x in enc.kept}:
            seen.discard(failed)  # a failed image may be fixed and added later
        write_shard(
            emb_dir,
            chunk.name,
            input_ids=[r.image_id for r in chunk.records],
            records=enc.kept,
            image_emb=np.asarray(enc.image_emb, dtype=np.float32).reshape(-1, dim),
            caption_emb=np.asarray(enc.caption_emb, dtype=np.float32).reshape(-1, dim),
            thumbnails=enc.thumbnails,
            skipped=[*chunk.skipped, *enc.skipped],
        )
        meter.update(len(chunk.records), embedded=True)

    try:
        engine.run(pending(), write, batch_size=batch_size, make_thumbnail=make_thumbnail)
    finally:
        meter.close()
    kept_total = 0
    skipped: list[Skipped] = []
    for name in names:
        meta = read_shard_meta(emb_dir, name)
        if meta is None:
            raise RuntimeError(f"the {engine.name} engine returned without writing shard {name}")
        skipped.extend(shard_skipped(meta))
        kept_total += int(meta["count"])
    return names, kept_total, skipped
