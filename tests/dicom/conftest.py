"""DICOM test fixtures: a folder of marked phantom studies, its captions, a pseudonym key."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.dicom_files import Markers, write_study
from tests.support.orthanc import Orthanc, orthanc_missing, running_orthanc


@dataclass
class MarkedSource:
    """A DICOM folder whose files carry markers in every Annex E attribute they have."""

    root: Path
    captions: Path
    markers: Markers
    studies: list[dict[str, object]] = field(default_factory=list)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())


def write_marked_source(out: Path, captions: Path) -> MarkedSource:
    """Three studies (CT, MR, CR; 2 series x 3 instances), a US study and a burned-in CT
    study (both refused by the burned-in rule), every file marked; captions by series UID."""
    markers = Markers()
    source = MarkedSource(out, captions, markers)
    for number, modality in enumerate(("CT", "MR", "CR")):
        source.studies.append(
            write_study(out, first_index=number * 10, modality=modality, series=2,
                        markers=markers, suffix="" if modality == "MR" else ".dcm")
        )  # fmt: skip
    source.studies.append(write_study(out, first_index=100, modality="US", markers=markers))
    source.studies.append(write_study(out, first_index=200, markers=markers, burned_in="YES"))
    with open(captions, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["SeriesInstanceUID", "caption"])
        for study in source.studies[:3]:
            for uid, caption in study["captions"].items():  # type: ignore[attr-defined]
                writer.writerow([uid, caption])
    return source


@pytest.fixture(scope="session")
def marked_source(tmp_path_factory: pytest.TempPathFactory) -> MarkedSource:
    base = tmp_path_factory.mktemp("dicom_src")
    return write_marked_source(base / "pacs_export", base / "captions.csv")


@pytest.fixture(scope="session")
def dicom_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's pseudonym key lives (created by the first build)."""
    return tmp_path_factory.mktemp("dicom_key") / "medcap.key"


@pytest.fixture(scope="module")
def orthanc(
    marked_source: MarkedSource, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orthanc]:
    """A real Orthanc on 127.0.0.1 holding every file of the marked source (uploaded through
    its REST API); skipped with the reason where Orthanc is not installed."""
    missing = orthanc_missing()
    if missing is not None:
        print(f"note: {missing}")
        pytest.skip(missing)
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        assert server.upload(marked_source.files()) == len(marked_source.files())
        yield server
    assert server.proc.poll() is not None  # stopped: no Orthanc left behind
