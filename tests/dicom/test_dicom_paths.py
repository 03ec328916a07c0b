"""A DICOM file's path can name a patient (exports are often filed by name): an index
records no path of a DICOM case, not even of a case whose pixels cannot be decoded, on the
one-process build and in the pieces the Ray engine's tasks decode."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from medcap.cli import main
from medcap.data.dicom import DicomOptions
from medcap.data.readers import open_dataset
from tests.support.dicom_files import files_under, write_study

NAME = "DOE^JOHN_1957"  # the folder a hospital export put the patient's studies in


def _source(tmp_path: Path) -> Path:
    """Two readable studies and one whose pixel data is cut short, under the patient's name."""
    root = tmp_path / "export" / NAME
    write_study(root, first_index=0, modality="CT")
    write_study(root, first_index=10, modality="MR")
    broken = write_study(root, first_index=20, modality="CR", instances=1)
    path = next(
        p for p in root.rglob("*.dcm") if pydicom.dcmread(p).StudyInstanceUID == broken["study"]
    )
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:100]  # a header that promises 64x64 pixels, 50 of them
    ds.save_as(path)
    return root.parent


def test_no_path_of_a_dicom_case_reaches_the_index_or_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    source, out = _source(tmp_path), tmp_path / "index"
    caplog.set_level(logging.DEBUG)
    code = main(["index", "build", "--data", str(source), "--out", str(out),
                 "--pseudonym-key", str(tmp_path / "key"), "--model", "medcap-tiny"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "indexed 2 cases" in captured.out and "skipped 1 cases" in captured.out
    index_bytes = b"".join(p.read_bytes() for p in files_under(out))
    assert NAME.encode() not in index_bytes
    paths = pq.read_table(out / "items.parquet", columns=["image_path"]).column("image_path")
    assert paths.null_count == 2
    assert NAME not in caplog.text and NAME not in captured.out + captured.err
    assert "<DICOM file, path withheld>" in (out / "skipped.jsonl").read_text()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="medcap[dist] not installed")
def test_ray_pieces_keep_the_rule_that_dicom_paths_are_not_stored(tmp_path: Path) -> None:
    from medcap.dist.index_engine import decode_piece
    from medcap.encoder import load_encoder
    from medcap.encoder.decode import uint8_transform

    dataset = open_dataset(_source(tmp_path), dicom=DicomOptions(pseudonym_key=str(tmp_path / "k")))
    records = list(dataset.records("train"))
    assert len(records) == 3 and all(not r.image.store_path for r in records)
    transform = uint8_transform(load_encoder("medcap-tiny", device="cpu").preprocess)
    piece = decode_piece(records, transform, 64, None)
    assert len(piece.images) == 2 and not any(image.store_path for image in piece.images)
    (skipped,) = piece.skipped
    assert NAME not in skipped.source + skipped.reason and "path withheld" in skipped.source
