"""Decode encoded images to uint8 tensors on the encoder's device and resize them there.

Pillow decoding in DataLoader workers tops out near 1,300 ViT-B-16 images/s on an H100
host (FACTS.md). Here JPEGs decode with nvjpeg (`torchvision.io.decode_jpeg` on CUDA, in
one batched call), PNGs with torchvision on the CPU, and images of one size are resized as
one batch on the device. The result follows the Pillow path (`medcap.data.images`)
wherever the formats allow: EXIF orientation of JPEGs, 16-bit grey PNGs windowed min-max
to 8 bits, 16-bit colour PNGs cut to their high byte, alpha composited over black. Every
other image (CMYK JPEG, palette PNG, TIFF, DICOM, damaged files) goes through Pillow itself,
and so does one whose header declares more pixels than `data.max_image_pixels`, which
Pillow's path refuses before decoding it.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from medcap.data.images import exceeds_pixel_limit
from medcap.encoder.decode import DecodedBatch
from medcap.errors import ImageDecodeError
from medcap.types import ImageRef

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_RESIZE_CHUNK = 64  # images resized per call: bounds the float copy of full-size images


@dataclass(frozen=True)
class Geometry:
    """The eval transform's geometry: a square `size`, how to get there, which filter."""

    size: int
    resize_mode: str  # shortest (then centre crop) | squash
    interpolation: str  # bicubic | bilinear


def geometry_of(preprocess_cfg: dict[str, Any]) -> Geometry | None:
    """The Geometry of an open_clip preprocessing config, or None where only Pillow matches
    it (non-square sizes, `longest` with padding)."""
    size = torch.tensor(preprocess_cfg.get("size", 224)).reshape(-1).tolist()
    mode = str(preprocess_cfg.get("resize_mode", "shortest"))
    interpolation = "bilinear" if preprocess_cfg.get("interpolation") == "bilinear" else "bicubic"
    if len(set(size)) != 1 or mode not in ("shortest", "squash"):
        return None
    return Geometry(int(size[0]), mode, interpolation)


# ---- headers ---------------------------------------------------------------------------


def jpeg_header(blob: bytes) -> tuple[int, int]:
    """(colour components, EXIF orientation 1-8) of a JPEG; (0, 1) when unreadable."""
    pos, components, orientation = 2, 0, 1
    while pos + 4 <= len(blob) and blob[pos] == 0xFF:
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(blob[pos + 2 : pos + 4], "big")
        body = blob[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(body[6:]) or orientation
        elif marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
            components = body[5] if len(body) > 5 else 0  # SOFn: precision, h, w, components
            break  # the frame header follows the APPn segments
        elif marker == 0xDA:  # start of scan without a frame header: damaged
            break
        pos += 2 + length
    return components, orientation


def _exif_orientation(tiff: bytes) -> int | None:
    """Tag 0x0112 of IFD0 in a TIFF-structured EXIF block."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for k in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else None
    return None


def png_header(blob: bytes) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR; (0, -1) when it is not a PNG."""
    if blob[:8] != PNG_MAGIC or len(blob) < 26 or blob[12:16] != b"IHDR":
        return 0, -1
    return blob[24], blob[25]


# ---- pixel conversions that follow medcap.data.images ----------------------------------


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) as Pillow's `ImageOps.exif_transpose` turns it for EXIF `orientation`."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return image.rot90(-1, (-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return image.rot90(1, (-2, -1))
    return image


def window_to_uint8(gray: torch.Tensor) -> torch.Tensor:
    """16-bit grey -> uint8 with a min-max window (as `data.images.window_to_uint8`)."""
    values = gray.to(torch.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return torch.zeros(gray.shape, dtype=torch.uint8, device=gray.device)
    return ((values - low) / (high - low) * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def over_black(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """uint8 colour (C, H, W) with alpha (1, H, W) composited over opaque black, rounded
    with Pillow's `alpha_composite` integer arithmetic (7 bits of precision)."""
    t = color.to(torch.int32) * alpha.to(torch.int32) * 128 + (0x80 << 7)
    return ((((t >> 8) + t) >> 8) >> 7).to(torch.uint8)


def decode_png(blob: bytes) -> torch.Tensor | None:
    """uint8 RGB (3, H, W) on the CPU, or None for PNGs that Pillow should decode (palette,
    fewer than 8 bits, 16-bit grey with alpha, a transparent colour key)."""
    from torchvision.io import ImageReadMode, decode_image

    depth, color_type = png_header(blob)
    if depth not in (8, 16) or color_type not in (0, 2, 4, 6) or (depth, color_type) == (16, 4):
        return None
    if b"tRNS" in blob:  # a transparent colour key: Pillow's conversion rules apply
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision >= 0.29 announces moving to TorchCodec
        raw: torch.Tensor = decode_image(
            torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED
        )
    channels = raw.shape[0]
    if raw.dtype != torch.uint8:  # 16 bits: grey is windowed, colour keeps its high byte
        raw = window_to_uint8(raw) if channels == 1 else (raw.to(torch.int32) >> 8).to(torch.uint8)
    if channels in (2, 4):
        raw = over_black(raw[:-1], raw[-1:])
    return raw.expand(3, -1, -1).contiguous() if raw.shape[0] == 1 else raw


def _pillow(ref: ImageRef, draft_size: int) -> tuple[torch.Tensor | None, str]:
    """Decode with medcap's Pillow path: (uint8 RGB (3, H, W), "") or (None, reason)."""
    import numpy as np

    from medcap.data.images import load_image

    try:
        image = load_image(ref, draft_size=draft_size)
    except ImageDecodeError as exc:
        return None, str(exc)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), ""


def read_bytes(ref: ImageRef) -> bytes:
    """The encoded bytes of an image reference (its data, or the file's contents)."""
    if ref.data is not None:
        return ref.data
    if ref.path is None:
        raise ImageDecodeError(f"image reference has neither bytes nor a path ({ref.describe()})")
    try:
        return Path(ref.path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(
            f"cannot read image {ref.path}: {exc.strerror or exc}; check the image column or folder"
        ) from None


# ---- batches -----------------------------------------------------------------------------


def _resize(batch: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """uint8 (n, 3, h, w) -> uint8 (n, 3, size, size) as torchvision's Resize + CenterCrop."""
    h, w = batch.shape[-2:]
    size = geometry.size
    if geometry.resize_mode == "squash":
        new_h, new_w = size, size
    elif h <= w:  # torchvision truncates the long side
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    x = batch
    # Like PIL: the width pass, then the height pass, each rounded and clipped to 8 bits (the
    # clipping between passes matters for sharp edges, where the bicubic filter overshoots).
    for size_hw in ((h, new_w), (new_h, new_w)):
        if tuple(x.shape[-2:]) != size_hw:
            y = F.interpolate(
                x.float(),
                size=size_hw,
                mode=geometry.interpolation,
                antialias=True,  # PIL's filter (bicubic a = -0.5), as the Pillow path
                align_corners=False,
            )
            x = y.round_().clamp_(0, 255).to(torch.uint8)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def _decode_jpegs(
    blobs: dict[int, bytes], device: torch.device
) -> tuple[dict[int, torch.Tensor], list[int]]:
    """Decode JPEGs in one call on `device` (nvjpeg on CUDA); (images, indices that failed)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    keys = list(blobs)
    data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in keys]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision >= 0.29 announces moving to TorchCodec
        try:
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            return dict(zip(keys, images, strict=True)), []
        except RuntimeError:  # one bad file fails the whole call: retry one by one
            decoded, failed = {}, []
            for i, d in zip(keys, data, strict=True):
                try:
                    decoded[i] = decode_jpeg(d, mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    failed.append(i)
            return decoded, failed


def decode_batch(
    refs: Sequence[ImageRef], geometry: Geometry, device: torch.device
) -> DecodedBatch:
    """Decode and resize images on `device`; indices in the result refer to `refs`.

    Returns a DecodedBatch whose pixels are uint8 (m, 3, size, size) on `device`, grouped
    by source size (its `indices` give the order); undecodable images are in `failures`.
    """
    decoded: dict[int, torch.Tensor] = {}
    failures: list[tuple[int, str]] = []
    jpegs: dict[int, bytes] = {}
    orientation: dict[int, int] = {}
    pillow: list[int] = []
    for i, ref in enumerate(refs):
        if ref.path is not None and Path(ref.path).suffix.lower() in (".dcm", ".dicom"):
            pillow.append(i)
            continue
        try:
            blob = read_bytes(ref)
        except ImageDecodeError as exc:
            failures.append((i, str(exc)))
            continue
        if exceeds_pixel_limit(blob):  # torchvision has no limit: Pillow's path refuses it
            pillow.append(i)  # from the header, with the same one-line error
            continue
        if blob[:2] == JPEG_MAGIC:
            components, orientation[i] = jpeg_header(blob)
            if components in (1, 3):  # grey or YCbCr/RGB; CMYK and damaged go to Pillow
                jpegs[i] = blob
                continue
        elif blob[:8] == PNG_MAGIC:
            try:
                image = decode_png(blob)
            except RuntimeError:
                image = None
            if image is not None:
                decoded[i] = image.to(device, non_blocking=True)
                continue
        pillow.append(i)
    if jpegs:
        images, failed = _decode_jpegs(jpegs, device)
        decoded.update((i, apply_orientation(im, orientation[i])) for i, im in images.items())
        pillow.extend(failed)
    for i in pillow:
        image, reason = _pillow(refs[i], geometry.size)
        if image is None:
            failures.append((i, reason))
        else:
            decoded[i] = image.to(device, non_blocking=True)
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in decoded.items():
        by_shape[tuple(image.shape[-2:])].append(i)
    order: list[int] = []
    parts: list[torch.Tensor] = []
    for indices in by_shape.values():
        for s in range(0, len(indices), _RESIZE_CHUNK):
            chunk = indices[s : s + _RESIZE_CHUNK]
            parts.append(_resize(torch.stack([decoded[i] for i in chunk]), geometry))
            order.extend(chunk)
    pixels = torch.cat(parts) if parts else None
    return DecodedBatch(order, pixels, sorted(failures))
