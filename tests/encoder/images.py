"""Encoded test images of every kind the decoders meet (smooth, so they compress like scans)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def smooth(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth uint8 image (h, w) or (h, w, c): upsampled noise."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), *shape[2:]), dtype=np.uint8)
    channels = [coarse] if coarse.ndim == 2 else [coarse[..., c] for c in range(shape[2])]
    planes = [np.asarray(Image.fromarray(c).resize((w, h), Image.BICUBIC)) for c in channels]
    return planes[0] if coarse.ndim == 2 else np.dstack(planes)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) written by hand:
    Pillow cannot write 16-bit colour."""
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = pixels.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def every_format() -> dict[str, bytes]:
    """name -> encoded bytes: JPEG and PNG in every mode, 16-bit, alpha, palette, CMYK, WEBP,
    BMP, TIFF, and JPEGs carrying each EXIF orientation."""
    rgb = Image.fromarray(smooth((90, 120, 3), 1))
    gray = Image.fromarray(smooth((100, 80), 2))
    alpha = smooth((60, 70), 3)
    out = {
        "jpeg-rgb": encode(rgb, "JPEG", quality=95),
        "jpeg-gray": encode(gray, "JPEG", quality=95),
        "jpeg-progressive": encode(rgb, "JPEG", quality=95, progressive=True),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "png-rgb": encode(rgb, "PNG"),
        "png-gray": encode(gray, "PNG"),
        "png-16-gray": encode(Image.fromarray(smooth((70, 90), 4).astype(np.uint16) * 37), "PNG"),
        "png-16-rgb": png16(smooth((64, 72, 3), 5).astype(np.uint16) * 250),
        "png-16-rgba": png16(smooth((64, 72, 4), 6).astype(np.uint16) * 257),
        "png-rgba": encode(Image.fromarray(np.dstack([np.asarray(rgb)[:60, :70], alpha])), "PNG"),
        "png-la": encode(Image.fromarray(np.dstack([np.asarray(gray)[:60, :70], alpha])), "PNG"),
        "png-palette": encode(rgb.convert("P"), "PNG"),
        "png-palette-transparent": encode(rgb.convert("P"), "PNG", transparency=3),
        "png-1bit": encode(gray.convert("1"), "PNG"),
        "webp": encode(rgb, "WEBP", quality=95),
        "bmp": encode(rgb, "BMP"),
        "tiff-16": encode(Image.fromarray(smooth((64, 64), 7).astype(np.uint16) * 99), "TIFF"),
    }
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out[f"jpeg-exif-{orientation}"] = encode(rgb, "JPEG", quality=95, exif=exif.tobytes())
    return out
