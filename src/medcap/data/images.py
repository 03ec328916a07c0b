"""Open any image reference as an RGB PIL image: every Pillow mode, 16-bit, and DICOM.

Nothing is dropped for being grayscale: one-channel images are replicated to RGB.
High bit-depth data (I;16, I, F, DICOM) is windowed to 8 bits: DICOM with its stored
VOI window when there is one, else its 0.5th-99.5th percentiles; everything else with a
min-max window.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from medcap.config import current
from medcap.errors import ImageDecodeError, ImageTooLargeError, first_line
from medcap.types import ImageRef

log = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".dcm", ".dicom"}
)
_DICOM_MAGIC_OFFSET = 128
DICOM_PERCENTILES = (0.5, 99.5)  # the window of a DICOM image without a stored VOI window


def load_image(
    ref: ImageRef | str | Path, *, draft_size: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode `ref` (bytes or a path) to an 8-bit RGB image.

    `draft_size` lets JPEG decoding shrink by DCT scaling to no less than that many
    pixels per side (much faster for large JPEGs that are resized afterwards anyway).
    Images over `max_pixels` (default: `data.max_image_pixels` of the active config;
    DICOM: rows x columns x frames) are refused from their header, before any pixel is
    decoded. Pillow's own guard (`PIL.Image.MAX_IMAGE_PIXELS`, which medcap leaves alone)
    applies as well.
    Raises `ImageDecodeError` naming the file when the data cannot be decoded.

    >>> load_image("scan.png").mode
    'RGB'
    """
    limit = current().data.max_image_pixels if max_pixels is None else max_pixels
    if isinstance(ref, ImageRef):
        name, data, path = ref.describe(), ref.data, ref.path
    else:
        name, data, path = str(ref), None, str(ref)
    try:
        if data is None:
            if path is None:
                raise ImageDecodeError(f"image reference has neither bytes nor a path ({name})")
            if not Path(path).is_file():
                raise ImageDecodeError(
                    f"image file {path} does not exist; check the image column or folder"
                )
            if _is_dicom_path(path):
                return _load_dicom(path, name, limit)
            with Image.open(path) as image:
                return _decode(image, draft_size, name, limit)
        if _is_dicom_bytes(data) or (
            path is not None and Path(path).suffix.lower() in DICOM_SUFFIXES
        ):
            return _load_dicom(io.BytesIO(data), name, limit)
        with Image.open(io.BytesIO(data)) as image:
            return _decode(image, draft_size, name, limit)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"image {name} is over Pillow's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
            "pixels; refused before decoding (downscale it)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = first_line(exc)
        raise ImageDecodeError(
            f"cannot decode image {name}: {reason}; replace or remove the file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is one bad image, not a crash
        raise ImageDecodeError(
            f"cannot decode image {name}: {type(exc).__name__}: {first_line(exc)}; "
            "replace or remove the file"
        ) from None


@dataclass(frozen=True)
class ImageInfo:
    """What an image file holds before conversion: size in pixels, Pillow mode, format."""

    width: int
    height: int
    mode: str  # the stored Pillow mode (L, I;16, RGBA, ...) or "DICOM"
    format: str  # PNG, JPEG, ..., DICOM


def probe_image(ref: ImageRef | str | Path) -> ImageInfo:
    """Decode `ref` fully (as `load_image` does) and report its stored size, mode and format."""
    if isinstance(ref, ImageRef):
        data, path = ref.data, ref.path
    else:
        data, path = None, str(ref)
    stored: tuple[str, str] | None = None
    try:
        opened = Image.open(io.BytesIO(data)) if data is not None else Image.open(path or "")
        with opened as image:
            stored = (image.mode, str(image.format))
    except Exception:  # noqa: BLE001 - DICOM or broken: load_image below tells which
        stored = None
    rgb = load_image(ref)
    mode, fmt = stored if stored is not None else ("DICOM", "DICOM")
    return ImageInfo(width=rgb.width, height=rgb.height, mode=mode, format=fmt)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an image of any Pillow mode to 8-bit RGB (alpha composited over black)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("L", "1"):
        return image.convert("L").convert("RGB")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return to_rgb(image.convert("RGBA" if has_alpha else "RGB"))
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        gray = window_to_uint8(np.asarray(image))
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def window_to_uint8(
    pixels: NDArray[np.generic], low: float | None = None, high: float | None = None
) -> NDArray[np.uint8]:
    """Map `pixels` linearly from [low, high] (default: their min and max) to 0..255."""
    values = np.asarray(pixels, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(finite.min()) if low is None else low
    high = float(finite.max()) if high is None else high
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def exceeds_pixel_limit(data: bytes, limit: int | None = None) -> bool:
    """Whether encoded image bytes declare more pixels than `limit` (header only; for
    decoders other than Pillow, such as nvjpeg). Unreadable headers are left to the decoder."""
    limit = current().data.max_image_pixels if limit is None else limit
    try:
        with Image.open(io.BytesIO(data)) as image:
            return bool(limit) and image.width * image.height > limit
    except Image.DecompressionBombError:
        return True
    except Exception:  # noqa: BLE001 - not a Pillow format (DICOM, damaged): the decoder decides
        return False


def check_pixels(name: str, width: int, height: int, frames: int, limit: int) -> None:
    """Refuse an image whose header says it holds more than `limit` pixels (0: no limit)."""
    pixels = width * height * max(1, frames)
    if limit and pixels > limit:
        what = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        raise ImageTooLargeError(
            f"image {name} is {what} ({pixels:,} pixels), over the limit of {limit:,}; "
            "refused before decoding (downscale it)"
        )


def _decode(image: Image.Image, draft_size: int | None, name: str, limit: int) -> Image.Image:
    check_pixels(name, image.width, image.height, 1, limit)  # Pillow opens lazily: header only
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    image.load()
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.format in ("JPEG", "TIFF", "WEBP"):  # camera-style orientation tags
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def _is_dicom_path(path: str) -> bool:
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    return _is_dicom_bytes(head)


def _is_dicom_bytes(data: bytes) -> bool:
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _load_dicom(source: str | io.BytesIO, name: str, limit: int) -> Image.Image:
    """Decode a DICOM file: modality LUT, then the stored VOI window or a percentile window."""
    import pydicom
    from pydicom.pixels.processing import apply_modality_lut

    header = pydicom.dcmread(source, force=True, stop_before_pixels=True)
    frames = _as_int(getattr(header, "NumberOfFrames", 1))
    check_pixels(
        name, _as_int(getattr(header, "Columns", 0)), _as_int(getattr(header, "Rows", 0)),
        frames, limit,
    )  # fmt: skip
    if isinstance(source, io.BytesIO):
        source.seek(0)
    dataset = pydicom.dcmread(source, force=True)
    if "PixelData" not in dataset:
        raise ValueError("DICOM file has no pixel data")
    pixels = dataset.pixel_array
    if frames > 1:
        pixels = pixels[frames // 2]  # the middle frame represents a multi-frame series best
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):  # colour DICOM (pydicom gives RGB)
        rgb = pixels[..., :3]
        if rgb.dtype != np.uint8:  # scale the stored bit depth to 8 bits
            rgb = window_to_uint8(rgb, 0.0, float(2 ** int(getattr(dataset, "BitsStored", 16)) - 1))
        return Image.fromarray(rgb)
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    window = _stored_window(dataset) or _percentile_window(values)
    gray = window_to_uint8(values, *window) if window else window_to_uint8(values)
    if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
        gray = 255 - gray
    return Image.fromarray(gray).convert("RGB")


def _stored_window(dataset: object) -> tuple[float, float] | None:
    center = getattr(dataset, "WindowCenter", None)
    width = getattr(dataset, "WindowWidth", None)
    if center is None or width is None:
        return None
    center_value = float(center[0] if _is_multi(center) else center)
    width_value = float(width[0] if _is_multi(width) else width)
    if width_value <= 0:
        return None
    return center_value - width_value / 2.0, center_value + width_value / 2.0


def _percentile_window(values: NDArray[np.float64]) -> tuple[float, float] | None:
    """[p0.5, p99.5] of the finite values: a few extreme pixels (metal, air, padding) do not
    wash out the rest, as they would with min-max. None when that range is empty."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = (float(v) for v in np.percentile(finite, DICOM_PERCENTILES))
    return (low, high) if high > low else None


def _is_multi(value: object) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _as_int(value: Any) -> int:
    """A DICOM count (Rows, NumberOfFrames, ...) as an int; missing or odd values count as 1."""
    try:
        return max(1, int(value))
    except (TypeError, ValueError, OverflowError):
        return 1
