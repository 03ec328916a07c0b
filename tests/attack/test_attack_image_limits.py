"""Item 3: pixel limits checked from the header before decoding; upload bytes capped."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap.app import launch
from medcap.config import DEFAULTS
from medcap.errors import ImageDecodeError
from medcap.types import ImageRef
from tests.app.conftest import AppFactory
from tests.attack.helpers import write_blank_png

# Runs in a fresh interpreter: peak RSS growth of one load_image call, and PIL's global.
_PROBE = """
import json, resource, sys, time
from PIL import Image
default = Image.MAX_IMAGE_PIXELS
from medcap.data.images import load_image
from medcap.errors import ImageDecodeError
load_image(sys.argv[2])  # a small image: medcap's decoder is loaded and used
before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_image(sys.argv[1])
    outcome = "decoded"
except ImageDecodeError as exc:
    outcome = str(exc)
print(json.dumps({
    "outcome": outcome,
    "seconds": time.perf_counter() - start,
    "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024,
    "pil_global_unchanged": Image.MAX_IMAGE_PIXELS == default,
}))
"""


def test_item03_huge_png_is_refused_fast_with_little_memory(huge_png: Path, tmp_path: Path) -> None:
    small = write_blank_png(tmp_path / "small.png", 32, 32)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(huge_png), str(small)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith(f"image {huge_png} is ") and "refused" in result["outcome"]
    assert "\n" not in result["outcome"]
    assert result["rss_growth_mb"] < 50, result  # decoding would take 400 MB to 3.7 GB
    assert result["seconds"] < 20, result  # header only; decoding took 24 s
    assert result["pil_global_unchanged"], "medcap changed PIL.Image.MAX_IMAGE_PIXELS"
    assert huge_png.stat().st_size < 1_000_000  # a small file, a huge image


def test_item03_limit_from_config_refuses_before_decoding(tmp_path: Path) -> None:
    from medcap.data.images import load_image

    png = write_blank_png(tmp_path / "wide.png", 3000, 2000)
    with pytest.raises(ImageDecodeError, match=r"wide.png is 3000x2000 \(6,000,000 pixels\)"):
        load_image(png, max_pixels=5_000_000)
    assert load_image(png, max_pixels=6_000_000).size == (3000, 2000)
    assert DEFAULTS.data.max_image_pixels >= 10_000 * 10_000  # large scans still load
    assert DEFAULTS.app.max_upload_pixels < DEFAULTS.data.max_image_pixels


def test_item03_device_decoding_refuses_from_the_header_too(tmp_path: Path) -> None:
    """nvjpeg and torchvision have no pixel limit: the device path of encode_cases (run here
    on the CPU) refuses an over-limit image from its header, with load_image's error, and
    follows the active config (`--set data.max_image_pixels=...`)."""
    import dataclasses

    import torch

    from medcap.config import current, replace_set, use_config
    from medcap.encoder.gpu_decode import Geometry, decode_batch

    refs = [
        ImageRef(
            path="wide.png", data=write_blank_png(tmp_path / "w.png", 3000, 2000).read_bytes()
        ),
        ImageRef(path="small.png", data=write_blank_png(tmp_path / "s.png", 40, 30).read_bytes()),
    ]
    lower = replace_set(current().data, max_image_pixels=5_000_000)
    previous = use_config(dataclasses.replace(current(), data=lower))
    try:
        batch = decode_batch(refs, Geometry(32, "shortest", "bicubic"), torch.device("cpu"))
    finally:
        use_config(previous)
    assert batch.indices == [1] and batch.pixels is not None
    [(index, reason)] = batch.failures
    assert index == 0 and "wide.png is 3000x2000 (6,000,000 pixels), over the limit" in reason
    default = decode_batch(refs, Geometry(32, "shortest", "bicubic"), torch.device("cpu"))
    assert sorted(default.indices) == [0, 1]  # the default limit lets both through


def _dicom_bytes(rows: int, columns: int, frames: int) -> bytes:
    """A small uncompressed multi-frame DICOM (pydicom writes it)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = np.arange(rows * columns * frames, dtype=np.uint16).reshape(frames, rows, columns)
    ds.PixelData = (pixels % 4096).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_item03_dicom_counts_rows_columns_and_frames() -> None:
    from medcap.data.images import load_image

    data = _dicom_bytes(32, 48, 5)
    ref = ImageRef(path="series.dcm", data=data)
    with pytest.raises(ImageDecodeError, match=r"series.dcm is 48x32x5 frames \(7,680 pixels\)"):
        load_image(ref, max_pixels=32 * 48 * 4)
    assert load_image(ref, max_pixels=32 * 48 * 5).size == (48, 32)


def test_item03_upload_over_the_app_limit_is_refused_on_the_page(
    make_app: AppFactory, app_index_dir: Path, tmp_path: Path
) -> None:
    side = int(DEFAULTS.app.max_upload_pixels**0.5) + 1
    assert side * side < Image.MAX_IMAGE_PIXELS  # medcap's limit, not Pillow's, refuses it
    big = write_blank_png(tmp_path / "big.png", side, side).read_bytes()
    at = make_app(app_index_dir).run()
    at.file_uploader(key="search-upload").set_value(("big.png", big, "image/png"))
    at.run()
    assert [e.value for e in at.exception] == []
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "big.png" in errors[0] and "app.max_upload_pixels" in errors[0]
    assert not any(link.proto.page == "case" for link in at.page_link)  # no result cards


def test_item03_upload_bytes_are_capped_on_the_streamlit_line(tmp_path: Path) -> None:
    cmd = launch.streamlit_command(tmp_path, DEFAULTS.app)
    options = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert options["--server.maxUploadSize"] == str(DEFAULTS.app.max_upload_mb)
    assert 1 <= DEFAULTS.app.max_upload_mb <= 100  # Streamlit's own default is 200 MB
