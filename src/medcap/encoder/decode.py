"""Decode record images in DataLoader workers; failures come back as reasons, not exceptions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medcap.errors import ImageDecodeError
from medcap.types import Record, Skipped

Item = tuple[int, torch.Tensor | None, str]


class CaseImages(Dataset[Item]):
    """Item i: (i, transform(image of record i), "") or (i, None, why it failed).

    `draft_size` lets JPEGs decode at a reduced scale (DCT scaling) no smaller than the
    model's input, several times faster for large files that are downscaled anyway.
    """

    def __init__(self, records: Sequence[Record], transform: Any, draft_size: int | None = None):
        self.records = records
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Item:
        from medcap.data.images import load_image

        try:
            image = load_image(self.records[i].image, draft_size=self.draft_size)
            return i, self.transform(image), ""
        except ImageDecodeError as exc:
            return i, None, str(exc)
        except (OSError, ValueError, SyntaxError) as exc:  # damaged data Pillow did not map
            return i, None, f"{type(exc).__name__}: {exc}"


def _keep_items(items: list[Item]) -> list[Item]:
    return items


@dataclass
class DecodedBatch:
    """Decoded images of one batch: `pixels[j]` belongs to record `indices[j]`."""

    indices: list[int]
    pixels: torch.Tensor | None  # (len(indices), 3, H, W), or None when all failed
    failures: list[tuple[int, str]]  # (record index, reason)


def uint8_transform(preprocess: Any) -> Any:
    """The geometry of an open_clip eval transform (resize, crop, RGB) ending in uint8 CHW.

    Decoding to uint8 at model resolution once lets training cache images in memory and
    augment them as tensors; normalising the cached tensor reproduces the eval transform.
    """
    from torchvision.transforms import Compose, Normalize, PILToTensor

    steps = [t for t in preprocess.transforms if not isinstance(t, Normalize)]
    steps = [t for t in steps if type(t).__name__ not in ("ToTensor", "MaybeToTensor")]
    return Compose([*steps, PILToTensor()])


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
    """Decode `records` in order (or the given index `batches`), `num_workers` processes."""
    dataset = CaseImages(records, transform, draft_size)
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": _keep_items,
        "pin_memory": pin_memory,
        "prefetch_factor": 4 if num_workers > 0 else None,
    }
    if batches is None:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)
    else:
        loader = DataLoader(dataset, batch_sampler=[list(b) for b in batches], **common)
    for items in loader:
        good = [(i, t) for i, t, _ in items if t is not None]
        failures = [(i, reason) for i, t, reason in items if t is None]
        pixels = torch.stack([t for _, t in good]) if good else None
        yield DecodedBatch([i for i, _ in good], pixels, failures)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) or float in [0, 1] -> float normalised with mean/std per channel."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def skipped_entry(record: Record, reason: str) -> Skipped:
    """A Skipped row for a record whose image failed to decode."""
    return Skipped(record.image.describe(), None, record.image_id, reason)
