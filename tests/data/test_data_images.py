"""Image decoding: every Pillow mode and format, 16-bit data, DICOM, and bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap.data.images import DICOM_PERCENTILES, load_image, to_rgb, window_to_uint8
from medcap.errors import ImageDecodeError
from medcap.types import ImageRef

GRADIENT = np.tile(
    np.arange(0, 256, 4, dtype=np.uint8), (64, 1)
)  # 64 x 64, dark left -> bright right


def _mode_image(mode: str) -> Image.Image:
    gray = Image.fromarray(GRADIENT)
    if mode == "1":
        return gray.point(lambda v: 255 if v >= 128 else 0).convert("1")
    if mode in ("I;16", "I", "F"):
        values = GRADIENT.astype(np.float64) * 257.0  # the 16-bit range
        if mode == "I;16":
            return Image.fromarray(values.astype(np.uint16))
        if mode == "I":
            return Image.fromarray(values.astype(np.int32))
        return Image.fromarray(values.astype(np.float32))
    if mode == "P":
        return gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    if mode in ("RGBA", "LA"):
        image = gray.convert(mode)
        image.putalpha(255)
        return image
    return gray.convert(mode)  # RGB, CMYK


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb_and_keeps_the_gradient(mode: str) -> None:
    rgb = to_rgb(_mode_image(mode))
    assert rgb.mode == "RGB" and rgb.size == (64, 64)
    pixels = np.asarray(rgb, dtype=np.float32)
    assert pixels[:, :8].mean() < pixels[:, -8:].mean() - 100  # contrast survives the conversion
    if mode in ("L", "I;16", "I", "F", "1"):  # grayscale stays gray: three equal channels
        assert np.array_equal(pixels[..., 0], pixels[..., 1])


@pytest.mark.parametrize(
    "mode,fmt,suffix",
    [
        ("L", "PNG", ".png"),
        ("I;16", "PNG", ".png"),
        ("RGBA", "PNG", ".png"),
        ("P", "PNG", ".png"),
        ("LA", "PNG", ".png"),
        ("1", "PNG", ".png"),
        ("L", "JPEG", ".jpg"),
        ("CMYK", "JPEG", ".jpg"),
        ("RGB", "JPEG", ".jpeg"),
        ("I;16", "TIFF", ".tif"),
        ("F", "TIFF", ".tiff"),
        ("RGB", "BMP", ".bmp"),
        ("RGBA", "WEBP", ".webp"),
        ("L", "WEBP", ".webp"),
    ],
)
def test_files_and_bytes_of_each_format_decode(
    tmp_path: Path, mode: str, fmt: str, suffix: str
) -> None:
    path = tmp_path / f"image{suffix}"
    image = _mode_image(mode)
    image.save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(path) as saved:
        stored_mode = saved.mode
    from_path = load_image(path)
    from_bytes = load_image(ImageRef(path=path.name, data=path.read_bytes()))
    assert from_path.mode == from_bytes.mode == "RGB"
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    pixels = np.asarray(from_path, dtype=np.float32)
    assert pixels[:, :8].mean() < pixels[:, -8:].mean() - 100, stored_mode


def test_sixteen_bit_png_uses_a_min_max_window(tmp_path: Path) -> None:
    values = np.full((32, 32), 1000, dtype=np.uint16)
    values[:, 16:] = 1200  # a narrow band of a 16-bit range, as CT exports often are
    path = tmp_path / "ct16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as saved:
        assert saved.mode.startswith("I")
    pixels = np.asarray(load_image(path))[..., 0]
    assert pixels[:, :16].max() == 0 and pixels[:, 16:].min() == 255


def test_window_to_uint8_handles_flat_and_nan_data() -> None:
    assert window_to_uint8(np.full((4, 4), 7.0)).max() == 0
    out = window_to_uint8(np.array([[0.0, np.nan], [1.0, 2.0]]))
    assert out.tolist() == [[0, 0], [128, 255]]


def test_dicom_uses_the_stored_window_and_a_percentile_window_without_one(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    dataset = pydicom.dcmread(source)
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (dataset.Columns, dataset.Rows)

    dataset.WindowCenter, dataset.WindowWidth = 40, 400  # a soft-tissue window
    windowed_path = tmp_path / "windowed.dcm"
    dataset.save_as(windowed_path)
    for tag in ("WindowCenter", "WindowWidth"):
        if tag in dataset:
            delattr(dataset, tag)
    plain_path = tmp_path / "no_window"  # no suffix: recognised by the DICM magic
    dataset.save_as(plain_path)

    hu = pydicom.pixels.apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
    windowed = np.asarray(load_image(windowed_path))[..., 0]
    expected = np.round(np.clip((hu - (40 - 200)) / 400.0, 0, 1) * 255)
    assert np.abs(windowed.astype(np.float64) - expected).max() <= 1
    plain = np.asarray(load_image(plain_path))[..., 0]
    assert plain.min() == 0 and plain.max() == 255
    low, high = np.percentile(hu, DICOM_PERCENTILES)
    assert hu.min() < low and high < hu.max()  # the percentiles do differ from min-max here
    expected_plain = np.round(np.clip((hu - low) / (high - low), 0, 1) * 255)
    assert np.abs(plain.astype(np.float64) - expected_plain).max() <= 1
    from_bytes = load_image(ImageRef(path="scan.dcm", data=plain_path.read_bytes()))
    assert np.array_equal(np.asarray(from_bytes)[..., 0], plain)


def test_corrupt_image_raises_one_line_error_naming_the_file(tmp_path: Path) -> None:
    good = io.BytesIO()
    Image.fromarray(GRADIENT).save(good, format="PNG")
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(good.getvalue()[:60])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    for path in (truncated, garbage):
        with pytest.raises(ImageDecodeError) as info:
            load_image(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert "cannot decode" in message
    with pytest.raises(ImageDecodeError, match="in-memory image"):
        load_image(ImageRef(data=b"\x89PNG broken"))


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageDecodeError) as info:
        load_image(missing)
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    with pytest.raises(ImageDecodeError, match="neither bytes nor a path"):
        load_image(ImageRef())


def test_jpeg_draft_size_shrinks_large_jpegs_but_not_below_the_request(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(np.tile(GRADIENT, (8, 8))).save(path, quality=90)  # 512 x 512
    assert load_image(path).size == (512, 512)
    small = load_image(path, draft_size=224)
    assert small.mode == "RGB" and 224 <= min(small.size) < 512
