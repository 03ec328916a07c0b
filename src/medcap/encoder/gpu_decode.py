"""Decode encoded images on the GPU (nvjpeg) and resize them there, in batches.

Pillow decoding in DataLoader workers tops out near 1,300 ViT-B-16 images/s on an H100
host (FACTS.md); nvjpeg through `torchvision.io.decode_jpeg(device="cuda")` moves the
decode to the GPU. Images of one size are then resized as one batch (one interpolation
kernel per size, not one per image). Non-JPEG bytes (PNG, ...) are decoded on the CPU by
torchvision, and anything torchvision cannot read falls back to medcap's own decoder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

JPEG_MAGIC = b"\xff\xd8"


def _resize_shortest_center_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (n, 3, h, w) -> uint8 (n, 3, size, size): shortest side to `size`, centre crop."""
    h, w = batch.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = batch.float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(
            x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size]
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _cpu_decode(blob: bytes) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_image

    try:
        image: torch.Tensor = decode_image(
            torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB
        )
        return image
    except RuntimeError:
        return _medcap_decode(blob)


def _medcap_decode(blob: bytes) -> torch.Tensor | None:
    import numpy as np

    from medcap.data.images import load_image
    from medcap.errors import ImageDecodeError
    from medcap.types import ImageRef

    try:
        image = load_image(ImageRef(data=blob))  # 16-bit, DICOM, CMYK, ...
    except ImageDecodeError:
        return None
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def decode_resize_gpu(
    blobs: Sequence[bytes], size: int, device: torch.device
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Decode and resize encoded images on `device`.

    Returns (uint8 (m, 3, size, size) on `device`, the indices of `blobs` it holds in that
    order, the indices that could not be decoded).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    from medcap.data.images import exceeds_pixel_limit

    decoded: dict[int, torch.Tensor] = {}
    # torchvision has no pixel limit: images over medcap's are refused from their header.
    oversized = {i for i, b in enumerate(blobs) if exceeds_pixel_limit(b)}
    failed = sorted(oversized)
    jpegs = [i for i, b in enumerate(blobs) if b[:2] == JPEG_MAGIC and i not in oversized]
    if jpegs:
        data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpegs]
        try:
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            decoded.update(zip(jpegs, images, strict=True))
        except RuntimeError:  # one bad file fails the batch: retry one by one
            for i, d in zip(jpegs, data, strict=True):
                try:
                    decoded[i] = decode_jpeg(d, mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    cpu = _medcap_decode(blobs[i])
                    if cpu is None:
                        failed.append(i)
                    else:
                        decoded[i] = cpu.to(device)
    done = set(jpegs) | oversized
    for i, blob in enumerate(blobs):
        if i in done:
            continue
        image = _cpu_decode(blob)
        if image is None:
            failed.append(i)
        else:
            decoded[i] = image.to(device, non_blocking=True)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in decoded.items():
        by_shape[tuple(image.shape[-2:])].append(i)  # type: ignore[index]
    order: list[int] = []
    parts: list[torch.Tensor] = []
    for indices in by_shape.values():
        parts.append(_resize_shortest_center_crop(torch.stack([decoded[i] for i in indices]), size))
        order.extend(indices)
    if not parts:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8, device=device), [], sorted(failed)
    return torch.cat(parts), order, sorted(failed)
