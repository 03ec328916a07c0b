"""`--engine ray` for index builds: read + decode tasks feeding a pool of embedding actors.

Each chunk (one shard) is cut into pieces of `batches_per_task` model batches. A piece's
read + decode task reads its image cells (`fetch_images`: parquet row groups, or image
files) and decodes them to uint8 pixels at the model's input size on any CPU of the
cluster; an `EmbedActor` (the encoder loaded once, one GPU each where the cluster has GPUs)
normalises and embeds them batch by batch exactly as `Encoder.encode_cases` does, so the
vectors match a one-process build. The driver gathers a chunk's pieces in order and writes
its shard with the shared writer (`medcap.index.chunks`): same files, names, checksums and
row order as a local build, and the same resume.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import ray
import torch
from numpy.typing import NDArray

from medcap.config import DistConfig, EncoderConfig
from medcap.data import fetch_images
from medcap.dist.cluster import PoolShape, RaySession, pool_shape, ray_session
from medcap.dist.pool import OrderedPool, wait_ready
from medcap.encoder import Encoder, load_encoder
from medcap.encoder.decode import decode_batches, normalize, skipped_entry, uint8_transform
from medcap.errors import IndexMismatchError, MedcapError
from medcap.index.chunks import Chunk, EncodedChunk, ShardWriter
from medcap.index.shards import Thumbnailer
from medcap.types import ImageRef, Record, Skipped

LOG = logging.getLogger(__name__)


@dataclass
class DecodedPiece:
    """A piece's decodable images, uint8 (m, 3, H, W), and what the driver needs back."""

    pixels: NDArray[np.uint8]
    captions: list[str]
    kept: list[int]  # positions in the piece of the decodable records, ascending
    images: list[ImageRef]  # their image references, bytes dropped (items keep a storable path)
    thumbnails: list[bytes | None]
    skipped: list[Skipped]


@dataclass
class EmbeddedPiece:
    """A piece's vectors (rows = `kept`), with the decode results passed through."""

    kept: list[int]
    images: list[ImageRef]
    thumbnails: list[bytes | None]
    skipped: list[Skipped]
    image_emb: NDArray[np.float32]
    caption_emb: NDArray[np.float32]


def decode_piece(
    records: list[Record], transform: Any, draft_size: int, make_thumbnail: Thumbnailer | None
) -> DecodedPiece:
    """Read and decode a piece (undecodable images are skipped with their reason)."""
    fetched = fetch_images(records)
    kept: list[int] = []
    pixels: list[torch.Tensor] = []
    skipped: list[Skipped] = []
    for batch in decode_batches(fetched, transform, batch_size=max(len(fetched), 1),
                                draft_size=draft_size):  # fmt: skip
        for i, reason in batch.failures:
            skipped.append(skipped_entry(fetched[i], reason))
            LOG.warning("skipped %s: %s", fetched[i].image_id, reason)
        if batch.pixels is not None:
            kept.extend(batch.indices)
            pixels.append(batch.pixels)
    stacked = torch.cat(pixels).numpy() if pixels else np.zeros((0, 3, 1, 1), np.uint8)
    return DecodedPiece(
        pixels=stacked,
        captions=[fetched[i].caption for i in kept],
        kept=kept,
        images=[replace(fetched[i].image, data=None) for i in kept],
        thumbnails=[make_thumbnail(fetched[i]) if make_thumbnail else None for i in kept],
        skipped=skipped,
    )


def _node_ip() -> str:
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


class EmbedActor:
    """One encoder, loaded once; embeds decoded pieces. A load error is kept and raised by
    each call, so the driver gets it as a MedcapError instead of a dead actor."""

    def __init__(
        self, spec: str, cfg: EncoderConfig, fingerprint: str, device: str, threads: int
    ) -> None:
        torch.set_num_threads(threads)
        self.error: MedcapError | None = None
        try:
            self.encoder: Encoder = load_encoder(spec, device=device, cfg=cfg)
            if self.encoder.fingerprint != fingerprint:
                raise IndexMismatchError(
                    f"encoder {spec!r} on node {_node_ip()} has fingerprint "
                    f"{self.encoder.fingerprint[:16]}, the driver's {fingerprint[:16]}: every "
                    "node needs the same weights at the same path"
                )
        except MedcapError as exc:
            self.error = exc

    def ready(self) -> str:
        """The node and device this actor embeds on (raises its load error)."""
        if self.error is not None:
            raise self.error
        return f"{_node_ip()} {self.encoder.device}"

    def embed(self, piece: DecodedPiece, batch_size: int) -> EmbeddedPiece:
        """Embed a piece in the model batches a local build uses (positions // batch_size)."""
        if self.error is not None:
            raise self.error
        enc = self.encoder
        mean, std = enc.preprocess_cfg["mean"], enc.preprocess_cfg["std"]
        empty = np.zeros((0, enc.embed_dim), dtype=np.float32)
        images, texts = [empty], [empty]
        batch_of = np.asarray(piece.kept, dtype=np.int64) // batch_size
        for b in np.unique(batch_of):
            rows = np.flatnonzero(batch_of == b)
            pixels = torch.from_numpy(piece.pixels[rows]).to(enc.device)  # uint8: 1/4 the copy
            images.append(enc.encode_pixels(normalize(pixels, mean, std)))
            captions = [piece.captions[r] for r in rows]
            texts.append(enc.encode_texts(captions, batch_size=len(captions)))
        return EmbeddedPiece(
            piece.kept, piece.images, piece.thumbnails, piece.skipped,
            np.concatenate(images), np.concatenate(texts),
        )  # fmt: skip


@dataclass
class _Piece:
    chunk: Chunk
    records: list[Record]
    last: bool  # the chunk's last piece


class RayIndexEngine:
    """A `ShardEngine` on a Ray cluster; use it as a context manager (it joins the cluster,
    or starts a local Ray, at the first chunk to embed, and leaves or stops it on exit)."""

    name = "ray"

    def __init__(self, encoder: Encoder, cfg: DistConfig) -> None:
        self.encoder = encoder  # the driver's copy: spec, fingerprint, preprocessing
        self.cfg = cfg
        self._stack = contextlib.ExitStack()
        self.session: RaySession | None = None
        self.shape: PoolShape | None = None
        self._ready: list[Any] = []

    @property
    def progress_every_s(self) -> float | None:
        return self.cfg.progress_every_s

    def __enter__(self) -> RayIndexEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()  # leaves the cluster, or stops the local Ray, if joined
        self.session = None

    def _join(self) -> RaySession:
        if self.session is None:
            self.session = self._stack.enter_context(ray_session(self.cfg))
        return self.session

    def _actors(self) -> list[Any]:
        session = self._join()
        self.shape = shape = pool_shape(session, self.cfg)
        actor = ray.remote(EmbedActor).options(
            num_cpus=shape.cpus, num_gpus=shape.gpus, max_restarts=self.cfg.max_restarts,
            max_task_retries=-1 if self.cfg.max_restarts else 0, scheduling_strategy="SPREAD",
        )  # fmt: skip
        actors: list[Any] = [
            actor.remote(
                self.encoder.spec,
                self.encoder.cfg,
                self.encoder.fingerprint,
                shape.device,
                shape.threads,
            )  # fmt: skip
            for _ in range(shape.actors)
        ]
        # Asked now, read after the first result: the actors load their model while the
        # first read + decode tasks start their worker processes.
        self._ready = [a.ready.remote() for a in actors]
        return actors

    def _log_actors(self, where: list[str]) -> None:
        shape = self.shape
        assert shape is not None
        LOG.info("ray: %d embedding actors (%g CPU, %g GPU each) on %s; %d tasks in flight",
                 shape.actors, shape.cpus, shape.gpus, ", ".join(sorted(set(where))),
                 shape.window)  # fmt: skip

    def _pieces(self, chunks: Iterable[Chunk], size: int) -> Iterator[_Piece]:
        for chunk in chunks:
            starts = range(0, max(len(chunk.fresh), 1), size)
            for start in starts:
                last = start == starts[-1]
                yield _Piece(chunk, chunk.fresh[start : start + size], last)

    def run(
        self,
        chunks: Iterable[Chunk],
        write: ShardWriter,
        *,
        batch_size: int,
        make_thumbnail: Thumbnailer | None,
    ) -> None:
        """Embed every chunk on the cluster and write each one's shard as it completes."""
        pieces = self._pieces(chunks, batch_size * self.cfg.batches_per_task)
        first = next(pieces, None)
        if first is None:
            return  # every shard was complete: no cluster needed
        actors = self._actors()
        assert self.shape is not None
        pool: OrderedPool[_Piece] = OrderedPool(
            actors, window=self.shape.window, stall_timeout_s=self.cfg.stall_timeout_s,
            retries=self.cfg.task_retries,
        )  # fmt: skip
        transform = ray.put(uint8_transform(self.encoder.preprocess))
        decode = ray.remote(decode_piece).options(
            num_cpus=self.cfg.decode_cpus, max_retries=self.cfg.task_retries
        )
        draft = self.encoder.input_size

        def submit(actor: Any, piece: _Piece) -> Any:
            if not piece.records:
                return None  # a chunk with nothing to embed (all ids already indexed)
            decoded = decode.remote(piece.records, transform, draft, make_thumbnail)
            return actor.embed.remote(decoded, batch_size)

        done: list[tuple[_Piece, EmbeddedPiece | None]] = []
        for piece, result in pool.map(itertools.chain([first], pieces), submit):
            if self._ready:
                self._log_actors(wait_ready(self._ready, self.cfg.stall_timeout_s))
                self._ready = []
            done.append((piece, result))
            if piece.last:
                write(piece.chunk, self._assemble(done))
                done = []

    def _assemble(self, pieces: list[tuple[_Piece, EmbeddedPiece | None]]) -> EncodedChunk:
        """One chunk's pieces -> its EncodedChunk, rows in the chunk's order."""
        dim = self.encoder.embed_dim
        kept: list[Record] = []
        img, cap = [np.zeros((0, dim), np.float32)], [np.zeros((0, dim), np.float32)]
        thumbs: list[bytes | None] = []
        skipped: list[Skipped] = []
        for piece, out in pieces:
            if out is None:
                continue
            pairs = zip(out.kept, out.images, strict=True)
            kept += [replace(piece.records[i], image=ref) for i, ref in pairs]
            img.append(out.image_emb)
            cap.append(out.caption_emb)
            thumbs += out.thumbnails
            skipped += out.skipped
        return EncodedChunk(kept, np.concatenate(img), np.concatenate(cap), thumbs, skipped)

