"""Decoding on the encoder's device (torchvision; nvjpeg on CUDA) against the Pillow path.

On the CPU the same code runs with torchvision's CPU decoders, so every rule that makes its
pixels follow `medcap.data.images` (16-bit PNGs, alpha, EXIF orientation, what goes to
Pillow) is checked here; tests/gpu/ repeats the comparison with nvjpeg.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from medcap.config import DEFAULTS, replace_set
from medcap.data.images import load_image
from medcap.encoder import load_encoder
from medcap.encoder.decode import uint8_transform
from medcap.encoder.gpu_decode import (
    decode_batch,
    geometry_of,
    jpeg_header,
    png_header,
)
from medcap.types import ImageRef, Record
from tests.encoder.images import encode, every_format, png16, smooth

CPU = torch.device("cpu")
MAX_PIXEL_DIFF = 2  # resize filters and JPEG IDCTs may round differently by a level or two
MIN_COSINE = 0.9999  # device-decoded vs Pillow-decoded embeddings of the same image


def _pillow_pixels(encoder: Any, blob: bytes) -> torch.Tensor:
    return uint8_transform(encoder.preprocess)(load_image(ImageRef(data=blob)))  # type: ignore[no-any-return]


def _device_pixels(encoder: Any, blobs: list[bytes]) -> dict[int, torch.Tensor]:
    batch = decode_batch([ImageRef(data=b) for b in blobs], encoder.geometry, CPU)
    assert batch.failures == []
    assert batch.pixels is not None and batch.pixels.dtype == torch.uint8
    return {i: batch.pixels[j] for j, i in enumerate(batch.indices)}


def test_every_format_decodes_like_pillow(tiny_encoder: Any) -> None:
    blobs = every_format()
    names = list(blobs)
    decoded = _device_pixels(tiny_encoder, [blobs[n] for n in names])  # one mixed batch
    assert sorted(decoded) == list(range(len(names)))
    for i, name in enumerate(names):
        expected = _pillow_pixels(tiny_encoder, blobs[name])
        diff = (decoded[i].int() - expected.int()).abs().max().item()
        assert diff <= MAX_PIXEL_DIFF, f"{name}: pixels differ by {diff}"


def test_vectors_match_the_pillow_path(tiny_encoder: Any) -> None:
    blobs = list(every_format().values())
    vectors, failed = tiny_encoder.encode_image_bytes(blobs, batch_size=7)
    assert failed == []
    reference = tiny_encoder.encode_images([load_image(ImageRef(data=b)) for b in blobs])
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() > MIN_COSINE, cosines


def test_16bit_png_is_windowed_not_white(tiny_encoder: Any) -> None:
    low_contrast = smooth((64, 96), 9).astype(np.uint16) * 4 + 1000  # 1000..2020 of 65535
    blob = encode(Image.fromarray(low_contrast), "PNG")
    assert png_header(blob) == (16, 0)
    pixels = _device_pixels(tiny_encoder, [blob])[0]
    expected = _pillow_pixels(tiny_encoder, blob)
    assert (pixels.int() - expected.int()).abs().max().item() <= MAX_PIXEL_DIFF
    assert int(pixels.max()) == 255 and int(pixels.min()) <= 5  # the full 8-bit range is used
    assert 60 < float(pixels.float().mean()) < 200  # not clamped to white


def test_16_and_8_bit_images_of_one_size_share_a_batch(tiny_encoder: Any) -> None:
    eight = encode(Image.fromarray(smooth((80, 80), 10)), "PNG")
    sixteen = encode(Image.fromarray(smooth((80, 80), 11).astype(np.uint16) * 200), "PNG")
    colour16 = png16(smooth((80, 80, 3), 12).astype(np.uint16) * 256)
    decoded = _device_pixels(tiny_encoder, [eight, sixteen, colour16, eight])
    assert sorted(decoded) == [0, 1, 2, 3]
    assert torch.equal(decoded[0], decoded[3])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tiny_encoder: Any, orientation: int) -> None:
    blobs = every_format()
    blob = blobs[f"jpeg-exif-{orientation}"]
    assert jpeg_header(blob) == (3, orientation)
    vectors, failed = tiny_encoder.encode_image_bytes([blob])
    reference = tiny_encoder.encode_images([load_image(ImageRef(data=blob))])
    assert failed == [] and float(vectors[0] @ reference[0]) > MIN_COSINE
    upright = _device_pixels(tiny_encoder, [blobs["jpeg-exif-1"]])[0]
    turned = _device_pixels(tiny_encoder, [blob])[0]
    expected = _pillow_pixels(tiny_encoder, blob)
    assert (turned.int() - expected.int()).abs().max().item() <= MAX_PIXEL_DIFF
    if orientation != 1:  # the orientation really changed the pixels
        assert (turned.float() - upright.float()).abs().mean().item() > 5


def test_damaged_and_missing_images_are_reasons(tiny_encoder: Any, tmp_path: Any) -> None:
    good = every_format()["jpeg-rgb"]
    refs = [
        ImageRef(data=b"\xff\xd8\xff\xe0 not really a jpeg"),
        ImageRef(path=str(tmp_path / "missing.png")),
        ImageRef(data=good),
        ImageRef(data=b"\x89PNG\r\n\x1a\n broken"),
    ]
    batch = decode_batch(refs, tiny_encoder.geometry, CPU)
    assert batch.indices == [2]
    assert [i for i, _ in batch.failures] == [0, 1, 3]
    assert all(reason and "\n" not in reason for _, reason in batch.failures)
    assert "missing.png" in batch.failures[1][1]


def test_headers() -> None:
    blobs = every_format()
    assert jpeg_header(blobs["jpeg-gray"])[0] == 1
    assert jpeg_header(blobs["jpeg-cmyk"])[0] == 4  # goes to Pillow
    assert jpeg_header(blobs["jpeg-rgb"]) == (3, 1)
    assert jpeg_header(b"\xff\xd8garbage") == (0, 1)
    assert png_header(blobs["png-palette"]) == (8, 3)
    assert png_header(blobs["png-16-rgba"]) == (16, 6)
    assert png_header(b"GIF89a") == (0, -1)


def test_geometry_follows_the_preprocessing() -> None:
    base = {"size": 224, "resize_mode": "shortest", "interpolation": "bicubic"}
    geometry = geometry_of(base)
    assert geometry is not None and (geometry.size, geometry.resize_mode) == (224, "shortest")
    squash = geometry_of({**base, "resize_mode": "squash", "interpolation": "bilinear"})
    assert squash is not None and squash.interpolation == "bilinear"
    assert geometry_of({**base, "resize_mode": "longest"}) is None  # padding: Pillow only
    assert geometry_of({**base, "size": (224, 256)}) is None


def _cases() -> list[Record]:
    blobs = every_format()
    records = [
        Record(f"case{i}", ImageRef(path=f"{name}.img", data=blob), f"caption {name}")
        for i, (name, blob) in enumerate(blobs.items())
    ]
    broken = Record("broken", ImageRef(path="broken.jpg", data=b"\xff\xd8\xff junk"), "lost")
    return [*records[:3], broken, *records[3:]]


def test_encode_cases_on_the_device_matches_the_workers_path(tiny_encoder: Any) -> None:
    """The index-build path with device decoding (as on CUDA) against Pillow workers."""
    device = load_encoder(
        "medcap-tiny", device="cpu", cfg=replace_set(DEFAULTS.encoder, image_decode="device")
    )
    assert device.decodes_on_device and not tiny_encoder.decodes_on_device
    records = _cases()
    kept, images, captions, skipped = device.encode_cases(records, batch_size=5)
    ref_kept, ref_images, ref_captions, ref_skipped = tiny_encoder.encode_cases(records)
    assert [r.image_id for r in kept] == [r.image_id for r in ref_kept]
    assert [s.image_id for s in skipped] == [s.image_id for s in ref_skipped] == ["broken"]
    assert np.sum(images * ref_images, axis=1).min() > MIN_COSINE
    np.testing.assert_allclose(captions, ref_captions, atol=1e-5)
