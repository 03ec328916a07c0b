"""Decode record images in DataLoader workers; failures come back as reasons, not exceptions.

Each worker decodes a whole batch and stacks it (`collate_decoded`), so one uint8 tensor per
batch crosses shared memory: a quarter of float32's size, one file descriptor per batch (not
per image), and one pinned buffer that a `non_blocking` copy really overlaps. Normalisation
happens afterwards on the model's device (`normalize`). An `ImageDecoder` keeps its worker
processes between calls, so an index build does not start new workers for every shard.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medcap.errors import ImageDecodeError
from medcap.types import Record, Skipped

Item = tuple[int, torch.Tensor | None, str]
Job = tuple[int, Record]  # (position in the caller's records, the record)


def decode_one(record: Record, transform: Any, draft_size: int | None) -> tuple[Any, str]:
    """(transform(image), "") or (None, why the image could not be decoded)."""
    from medcap.data.images import load_image

    try:
        return transform(load_image(record.image, draft_size=draft_size)), ""
    except ImageDecodeError as exc:
        return None, str(exc)
    except (OSError, ValueError, SyntaxError) as exc:  # damaged data Pillow did not map
        return None, f"{type(exc).__name__}: {exc}"


class CaseImages(Dataset[Item]):
    """Item (i, record) -> (i, transform(image of record), "") or (i, None, why it failed).

    Items are the jobs themselves (the sampler hands records to the workers), so a loader
    with persistent workers can decode new records on every call. `draft_size` lets JPEGs
    decode at a reduced scale (DCT scaling) no smaller than the model's input, several
    times faster for large files that are downscaled anyway.
    """

    def __init__(self, transform: Any, draft_size: int | None = None):
        self.transform = transform
        self.draft_size = draft_size

    def __getitem__(self, job: Job) -> Item:
        i, record = job
        pixels, reason = decode_one(record, self.transform, self.draft_size)
        return i, pixels, reason


@dataclass
class DecodedBatch:
    """Decoded images of one batch: `pixels[j]` belongs to record `indices[j]`."""

    indices: list[int]
    pixels: torch.Tensor | None  # (len(indices), 3, H, W), or None when all failed
    failures: list[tuple[int, str]]  # (record index, reason)

    def pin_memory(self) -> DecodedBatch:
        """A copy with pinned pixels (DataLoader's pin thread calls this)."""
        pixels = self.pixels.pin_memory() if self.pixels is not None else None
        return replace(self, pixels=pixels)


def collate_decoded(items: list[Item]) -> DecodedBatch:
    """Stack a batch's images where they were decoded (in the worker)."""
    good = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason) for i, t, reason in items if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return DecodedBatch([i for i, _ in good], pixels, failures)


def uint8_transform(preprocess: Any) -> Any:
    """The geometry of an open_clip eval transform (resize, crop, RGB) ending in uint8 CHW.

    Decoding to uint8 at model resolution once lets training cache images in memory and
    augment them as tensors; normalising the cached tensor reproduces the eval transform.
    """
    from torchvision.transforms import Compose, Normalize, PILToTensor

    steps = [t for t in preprocess.transforms if not isinstance(t, Normalize)]
    steps = [t for t in steps if type(t).__name__ not in ("ToTensor", "MaybeToTensor")]
    return Compose([*steps, PILToTensor()])


class _Feed:
    """A persistent loader's batch sampler: the batches of the current call."""

    def __init__(self) -> None:
        self.batches: list[list[Job]] = []

    def __iter__(self) -> Iterator[list[Job]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageDecoder:
    """Decodes records' images with `transform` in `num_workers` processes kept across calls.

    `batches(records)` yields DecodedBatch values in order; with `pin_memory` their pixels
    are pinned, ready for an asynchronous copy to the GPU.
    """

    def __init__(
        self,
        transform: Any,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        draft_size: int | None = None,
    ) -> None:
        self.dataset = CaseImages(transform, draft_size)
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._feed = _Feed()
        self._loader: DataLoader[Item] | None = None

    def batches(
        self,
        records: Sequence[Record],
        *,
        batch_size: int = 64,
        batches: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[DecodedBatch]:
        """Decode `records` in order (or the given index `batches`)."""
        if batches is None:
            batches = [
                range(s, min(s + batch_size, len(records)))
                for s in range(0, len(records), batch_size)
            ]
        jobs = [[(i, records[i]) for i in batch] for batch in batches]
        if self.num_workers == 0:
            for job in jobs:
                batch = collate_decoded([self.dataset[j] for j in job])
                yield batch.pin_memory() if self.pin_memory and batch.pixels is not None else batch
            return
        self._feed.batches = jobs
        yield from self._workers()

    def _workers(self) -> Iterator[DecodedBatch]:
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=self._feed,
                num_workers=self.num_workers,
                collate_fn=collate_decoded,
                pin_memory=self.pin_memory,
                persistent_workers=True,
                prefetch_factor=2,  # per worker; uint8 batches keep shared memory modest
            )
        yield from self._loader

    def close(self) -> None:
        """Stop the worker processes (they also stop when the decoder is garbage-collected)."""
        self._loader = None


def decode_batches(
    records: Sequence[Record],
    transform: Any,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    batches: Sequence[Sequence[int]] | None = None,
    pin_memory: bool = False,
    draft_size: int | None = None,
) -> Iterator[DecodedBatch]:
    """Decode `records` once in order (or the given index `batches`), `num_workers` processes."""
    decoder = ImageDecoder(
        transform, num_workers=num_workers, pin_memory=pin_memory, draft_size=draft_size
    )
    try:
        yield from decoder.batches(records, batch_size=batch_size, batches=batches)
    finally:
        decoder.close()


@functools.lru_cache(maxsize=16)
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: building them per batch copies from the host and waits for the GPU.
    m = torch.tensor(mean, dtype=dtype).view(1, -1, 1, 1).to(device)
    s = torch.tensor(std, dtype=dtype).view(1, -1, 1, 1).to(device)
    return m, s


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) or float in [0, 1] -> float normalised with mean/std per channel."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    m, s = _channel_stats(tuple(mean), tuple(std), x.device, x.dtype)
    return (x - m) / s


def skipped_entry(record: Record, reason: str) -> Skipped:
    """A Skipped row for a record whose image failed to decode."""
    return Skipped(record.image.describe(), None, record.image_id, reason)
