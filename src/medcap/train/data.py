"""Training data: cases as tensors, decoded once; deterministic sharded batch order.

Images are decoded once, at the model's resolution, to uint8 (B, 3, S, S). When the whole
split fits in `TrainConfig.cache_max_gb` (3,000 phantoms at 64 px take 37 MB; ROCOv2's
60k images at 224 px take 9 GB), they are cached in memory and every epoch is a tensor
gather. Otherwise each epoch decodes its batches in DataLoader workers (`num_workers`).
Captions are tokenized once up front either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import torch
from torch.utils.data import DistributedSampler

from medcap.encoder.decode import ImageDecoder, decode_batches, skipped_entry
from medcap.types import Record, Skipped

log = logging.getLogger(__name__)


class CaseBatch(NamedTuple):
    """One batch of cases: their indices, uint8 images (B, 3, S, S) and the indices again as
    an int64 tensor on the images' device (for gathering tokens without a host copy)."""

    indices: list[int]
    images: torch.Tensor
    rows: torch.Tensor


@dataclass
class CaseTensors:
    """The cases of one split, ready for training or validation."""

    records: list[Record]
    tokens: torch.Tensor  # (n, context_length) int64
    images: torch.Tensor | None  # (n, 3, S, S) uint8 when cached in memory, else None
    transform: Any  # record image -> uint8 (3, S, S), used when not cached
    num_workers: int = 0
    image_size: int | None = None  # model input size: JPEGs decode at no less than this
    skipped: list[Skipped] = field(default_factory=list)
    # Uncached cases decode every epoch in these workers, started once for the whole run.
    decoder: ImageDecoder | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def cached(self) -> bool:
        return self.images is not None

    def image_batches(self, batches: Sequence[Sequence[int]]) -> Iterator[CaseBatch]:
        """Yield each batch's cases in order. Uncached images that fail to decode are dropped
        from their batch and recorded in `skipped`."""
        if self.images is not None:
            # The whole index list goes to the cache's device once: gathering a GPU cache
            # with CPU indices would copy them, and wait for the GPU, at every batch.
            flat = [i for batch in batches for i in batch]
            rows = torch.tensor(flat, dtype=torch.long).to(self.images.device)
            start = 0
            for batch in batches:
                part = rows[start : start + len(batch)]
                start += len(batch)
                yield CaseBatch(list(batch), self.images[part], part)
            return
        seen = {s.image_id for s in self.skipped}
        if self.decoder is None:
            self.decoder = ImageDecoder(
                self.transform, num_workers=self.num_workers, draft_size=self.image_size
            )
        for decoded in self.decoder.batches(self.records, batches=batches):
            for i, reason in decoded.failures:
                if self.records[i].image_id not in seen:
                    seen.add(self.records[i].image_id)
                    self.skipped.append(skipped_entry(self.records[i], reason))
                    log.warning("skipped %s: %s", self.records[i].image_id, reason)
            if decoded.pixels is not None:
                rows = torch.tensor(decoded.indices, dtype=torch.long)
                yield CaseBatch(decoded.indices, decoded.pixels, rows)


def image_cache_bytes(n: int, image_size: int) -> int:
    """Bytes of a uint8 (n, 3, S, S) cache."""
    return n * 3 * image_size * image_size


def build_case_tensors(
    records: Sequence[Record],
    transform: Any,
    tokenizer: Any,
    *,
    image_size: int,
    cache_max_gb: float,
    num_workers: int = 0,
    decode_batch_size: int = 256,
) -> CaseTensors:
    """Tokenize captions and, when they fit the memory budget, decode every image once."""
    records = list(records)
    fits = image_cache_bytes(len(records), image_size) <= cache_max_gb * 1e9
    skipped: list[Skipped] = []
    images: torch.Tensor | None = None
    if fits and records:
        kept: list[Record] = []
        chunks: list[torch.Tensor] = []
        for batch in decode_batches(
            records,
            transform,
            batch_size=decode_batch_size,
            num_workers=num_workers,
            draft_size=image_size,
        ):
            for i, reason in batch.failures:
                skipped.append(skipped_entry(records[i], reason))
                log.warning("skipped %s: %s", records[i].image_id, reason)
            if batch.pixels is not None:
                kept.extend(records[i] for i in batch.indices)
                chunks.append(batch.pixels)
        records = kept
        size = (0, 3, image_size, image_size)
        images = torch.cat(chunks) if chunks else torch.zeros(size, dtype=torch.uint8)
    elif records:
        log.info(
            "%d images exceed the %.1f GB cache budget; decoding each epoch in %d workers",
            len(records),
            cache_max_gb,
            num_workers,
        )
    tokens = _tokenize(tokenizer, [r.caption for r in records])
    return CaseTensors(records, tokens, images, transform, num_workers, image_size, skipped)


def _tokenize(tokenizer: Any, captions: list[str], chunk: int = 4096) -> torch.Tensor:
    if not captions:
        return torch.zeros((0, 1), dtype=torch.long)
    return torch.cat([tokenizer(captions[i : i + chunk]) for i in range(0, len(captions), chunk)])


def epoch_batches(
    n: int, batch_size: int, accum: int, *, epoch: int, seed: int, rank: int, world_size: int
) -> list[list[list[int]]]:
    """This process's batches for one epoch: steps x accum micro-batches x batch_size indices.

    The order is a seeded permutation (DistributedSampler, seed + epoch), so it is the same
    after a resume; the last partial step is dropped so every process runs the same steps.
    """
    sampler: DistributedSampler[int] = DistributedSampler(
        cast(Any, range(n)),
        num_replicas=world_size,
        rank=rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    order = list(sampler)
    per_step = batch_size * accum
    steps = len(order) // per_step
    return [
        [
            order[s * per_step + j * batch_size : s * per_step + (j + 1) * batch_size]
            for j in range(accum)
        ]
        for s in range(steps)
    ]
