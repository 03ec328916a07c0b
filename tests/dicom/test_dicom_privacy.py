"""The marker test: no planted identifier reaches any byte medcap writes or serves.

Every Annex E attribute the test files carry (patient, physicians, institution, dates,
identifiers, UIDs) holds a unique marker. An index is built from the folder, then search,
caption, the service and the app pages run on it; every file of the index and the runs,
the captured output, the HTTP answers, the service log and the page trees are searched
for every marker, raw and (parquet) decoded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.index import open_index
from tests.dicom.conftest import MarkedSource
from tests.dicom.privacy import exercise_programs
from tests.support.dicom_files import files_under, find_markers
from tests.support.orthanc import Orthanc


def _check_no_marker(
    source: str,
    marked_source: MarkedSource,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(tmp_path)
    index_dir = tmp_path / "index"
    key = tmp_path / "keys" / "medcap.key"
    code = main([
        "--verbose", "index", "build", "--data", source, "--out", str(index_dir),
        "--model", "medcap-tiny", "--pseudonym-key", str(key),
        "--captions", str(marked_source.captions), "--thumbnail-size", "32",
    ])  # fmt: skip
    build_out = capsys.readouterr()
    assert code == 0, build_out.err
    assert len(open_index(index_dir)) == 6  # 3 studies x 2 series; US and burned-in refused
    query = next(p for p in marked_source.files() if p.suffix == ".dcm")
    texts = exercise_programs(index_dir, query, tmp_path, capsys, monkeypatch)
    texts["build output"] = build_out.out + build_out.err
    texts["logs"] = caplog.text
    assert len(marked_source.markers.planted) > 100
    # the checks can fail: the markers are in the source files and found there
    assert find_markers(marked_source.markers.planted, [query], {})
    written = [p for p in files_under(tmp_path) if not p.is_relative_to(tmp_path / "keys")]
    assert any(p.name == "items.parquet" for p in written)
    assert find_markers(marked_source.markers.planted, written, texts) == []


def test_no_marker_in_anything_written_or_served_folder(
    marked_source: MarkedSource,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _check_no_marker(str(marked_source.root), marked_source, tmp_path, capsys, monkeypatch, caplog)


def test_no_marker_in_anything_written_or_served_orthanc(
    orthanc: Orthanc,
    marked_source: MarkedSource,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = f"dicomweb:{orthanc.dicomweb}"
    _check_no_marker(source, marked_source, tmp_path, capsys, monkeypatch, caplog)
