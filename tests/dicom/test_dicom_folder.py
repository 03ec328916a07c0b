"""Reading a DICOM folder: recognition by content, cases per series or instance, captions,
the allowlist, the burned-in rule, and the pseudonym key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.data.dicom import DicomOptions
from medcap.data.readers import open_dataset
from medcap.errors import InputError
from tests.dicom.conftest import MarkedSource
from tests.support.dicom_files import write_study


def _open(source: Path, key: Path, **options: object) -> object:
    cfg = replace_set(DEFAULTS.dicom, **{k: v for k, v in options.items() if k != "captions"})
    captions = options.get("captions")
    return open_dataset(
        source,
        dicom=DicomOptions(pseudonym_key=str(key), captions=str(captions) if captions else None,
                           cfg=cfg),
    )  # fmt: skip


def test_series_cases_allowlist_and_burned_in_rule(
    marked_source: MarkedSource, tmp_path: Path
) -> None:
    key = tmp_path / "k"
    ds = _open(marked_source.root, key, captions=marked_source.captions)
    records = list(ds.records("train"))  # type: ignore[attr-defined]
    # 3 studies x 2 series; the US study and the burned-in study are skipped with why
    assert len(records) == 6
    reasons = sorted(s.reason for s in ds.skipped)  # type: ignore[attr-defined]
    assert len(reasons) == 2
    assert any("BurnedInAnnotation is YES" in r for r in reasons)
    assert any("modality US" in r for r in reasons)
    by_modality = sorted(r.extra["modality"] for r in records)
    assert by_modality == ["CR", "CR", "CT", "CT", "MR", "MR"]  # MR files have no extension
    for record in records:
        assert set(record.extra) == {"modality", "body_part", "study", "series"}
        assert record.image_id == record.extra["series"]
        assert record.image.store_path is False
    # the caption of each series is the middle instance's phantom caption from the sidecar
    captions = {c for s in marked_source.studies[:3] for c in s["captions"].values()}  # type: ignore[attr-defined]
    assert {r.caption for r in records} == captions
    studies = {r.extra["study"] for r in records}
    assert len(studies) == 3
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_instance_unit_and_allow_burned_in(marked_source: MarkedSource, tmp_path: Path) -> None:
    key = tmp_path / "k"
    ds = _open(marked_source.root, key, unit="instance", allow_burned_in=True)
    records = list(ds.records("train"))  # type: ignore[attr-defined]
    assert len(records) == 3 * 2 * 3 + 3 + 3  # every instance, US and burned-in included
    assert ds.skipped == []  # type: ignore[attr-defined]
    assert all(r.caption == "" for r in records)  # no sidecar: image search only
    assert all(r.image_id.startswith("in-") for r in records)


def test_same_key_same_ids_other_key_other_ids(marked_source: MarkedSource, tmp_path: Path) -> None:
    ids_a = [r.image_id for r in _open(marked_source.root, tmp_path / "a").records("train")]  # type: ignore[attr-defined]
    ids_a2 = [r.image_id for r in _open(marked_source.root, tmp_path / "a").records("train")]  # type: ignore[attr-defined]
    ids_b = [r.image_id for r in _open(marked_source.root, tmp_path / "b").records("train")]  # type: ignore[attr-defined]
    assert ids_a == ids_a2
    assert not set(ids_a) & set(ids_b)


def test_keep_tag_is_stored_and_identifiers_refused(
    tmp_path: Path, marked_source: MarkedSource
) -> None:
    from medcap.cli.dicom_options import dicom_options

    options = dicom_options(pseudonym_key=str(tmp_path / "k"), keep_tags=["SeriesNumber"])
    ds = open_dataset(marked_source.root, dicom=options)
    record = next(iter(ds.records("train")))
    assert record.extra["SeriesNumber"] == "1"
    assert "SeriesNumber" in ds.config.keep_columns
    with pytest.raises(InputError, match="never stored"):
        dicom_options(pseudonym_key="k", keep_tags=["PatientName"])
    with pytest.raises(InputError, match="not a DICOM keyword"):
        dicom_options(pseudonym_key="k", keep_tags=["NoSuchTag"])


def test_folder_without_key_and_bad_key_are_one_line(tmp_path: Path) -> None:
    write_study(tmp_path / "src", first_index=0, instances=1)
    with pytest.raises(InputError, match="--pseudonym-key"):
        open_dataset(tmp_path / "src")
    bad = tmp_path / "bad.key"
    bad.write_text("not hex")
    with pytest.raises(InputError, match="not a medcap key"):
        open_dataset(tmp_path / "src", dicom=DicomOptions(pseudonym_key=str(bad)))


def test_middle_instance_represents_the_series(tmp_path: Path) -> None:
    from medcap.data.dicom.instances import read_instance_info

    write_study(tmp_path / "src", first_index=0, instances=5)
    ds = _open(tmp_path / "src", tmp_path / "k")
    (record,) = list(ds.records("train"))  # type: ignore[attr-defined]
    assert read_instance_info(record.image.path).instance_number == 3


def test_compressed_syntaxes_decode_or_are_skipped_with_the_reason(tmp_path: Path) -> None:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML, JPEG2000Lossless, RLELossless

    from medcap.data.dicom.policy import can_decode
    from medcap.data.images import load_image

    src = tmp_path / "src"
    infos = [write_study(src, first_index=i * 10, instances=1, size=32) for i in range(3)]
    files = sorted(p for p in src.rglob("*.dcm"))
    plain = {f: load_image(f).tobytes() for f in files}
    rle, j2k, mpeg = files
    ds = pydicom.dcmread(rle)
    ds.compress(RLELossless)  # pydicom's own encoder and decoder
    ds.save_as(rle)
    if can_decode(JPEG2000Lossless):  # medcap[dicom]: pylibjpeg-openjpeg
        ds = pydicom.dcmread(j2k)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(j2k)
    assert not can_decode(MPEG2MPML)  # no MPEG-2 video handler is installed
    ds = pydicom.dcmread(mpeg)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3not-really-mpeg2"])
    ds.save_as(mpeg)
    dataset = _open(src, tmp_path / "k")
    records = list(dataset.records("train"))  # type: ignore[attr-defined]
    assert len(records) == 2
    (skipped,) = dataset.skipped  # type: ignore[attr-defined]
    assert MPEG2MPML in skipped.reason and "cannot be decoded" in skipped.reason
    for record in records:  # lossless: the same pixels as before compression
        assert load_image(record.image).tobytes() == plain[Path(record.image.path)]
    assert len(infos) == 3


def test_data_info_says_which_cases_have_no_caption(
    marked_source: MarkedSource, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medcap.cli import main

    base = ["data", "info", str(marked_source.root), "--pseudonym-key", str(tmp_path / "k")]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "6 cases have no caption" in out and "BurnedInAnnotation is YES" in out
    assert main([*base, "--captions", str(marked_source.captions)]) == 0
    assert "no caption" not in capsys.readouterr().out
