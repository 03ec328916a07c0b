"""DICOMweb sources against a real Orthanc on 127.0.0.1 (skipped with the reason where it
is not installed): listing, retrieval, filters, search by study, sync, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, replace_set
from medcap.data.dicom import DicomOptions
from medcap.data.readers import open_dataset
from medcap.errors import InputError
from medcap.index import open_index
from tests.app.served_app import free_port
from tests.dicom.conftest import MarkedSource
from tests.support.dicom_files import write_study
from tests.support.orthanc import Orthanc, orthanc_missing

MISSING = orthanc_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"skipped: {MISSING}")


def _records(source: str | Path, key: Path, **options: object) -> list[object]:
    dataset = open_dataset(source, dicom=DicomOptions(pseudonym_key=str(key), **options))  # type: ignore[arg-type]
    return list(dataset.records("train"))  # type: ignore[attr-defined]


def test_dicomweb_lists_the_same_cases_as_the_folder(
    orthanc: Orthanc, marked_source: MarkedSource, tmp_path: Path
) -> None:
    key = tmp_path / "k"
    web = _records(f"dicomweb:{orthanc.dicomweb}", key)
    folder = _records(marked_source.root, key)
    assert len(web) == 6  # the US and burned-in studies are refused here too
    summary = lambda rs: sorted((r.image_id, tuple(sorted(r.extra.items()))) for r in rs)  # noqa: E731
    assert summary(web) == summary(folder)
    # the retrieved bytes decode to the same pixels as the files
    from medcap.data.images import load_image

    by_id = {r.image_id: r for r in folder}  # type: ignore[attr-defined]
    for record in web:
        a = load_image(record.image)  # type: ignore[attr-defined]
        b = load_image(by_id[record.image_id].image)  # type: ignore[attr-defined]
        assert a.tobytes() == b.tobytes()


def test_study_and_qido_filters_restrict(
    orthanc: Orthanc, marked_source: MarkedSource, tmp_path: Path
) -> None:
    key = tmp_path / "k"
    study = str(marked_source.studies[1]["study"])
    only = _records(f"dicomweb:{orthanc.dicomweb}", key, studies=(study,))
    assert len(only) == 2 and {r.extra["modality"] for r in only} == {"MR"}  # type: ignore[attr-defined]
    one = _records(f"dicomweb:{orthanc.dicomweb}/studies/{study}", key)
    assert sorted(r.image_id for r in one) == sorted(r.image_id for r in only)  # type: ignore[attr-defined]
    cr = _records(f"dicomweb:{orthanc.dicomweb}", key, where=(("ModalitiesInStudy", "CR"),))
    assert len(cr) == 2 and {r.extra["modality"] for r in cr} == {"CR"}  # type: ignore[attr-defined]


def test_unreachable_server_is_one_line_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    cfg = replace_set(DEFAULTS.dicom, retries=1, retry_wait_s=0.05, timeout_s=2.0)
    dataset = open_dataset(
        f"dicomweb:{url}", dicom=DicomOptions(pseudonym_key=str(tmp_path / "k"), cfg=cfg)
    )
    with pytest.raises(InputError) as info:
        dataset.count("train")
    message = str(info.value)
    assert url in message and "after 2 tries" in message and "\n" not in message


def test_build_search_by_study_and_sync_through_orthanc(
    orthanc: Orthanc,
    marked_source: MarkedSource,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = f"dicomweb:{orthanc.dicomweb}"
    out, key = tmp_path / "index", tmp_path / "k"
    code = main([
        "index", "build", "--data", source, "--out", str(out), "--model", "medcap-tiny",
        "--pseudonym-key", str(key), "--captions", str(marked_source.captions),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    index = open_index(out)
    assert len(index) == 6
    study = str(marked_source.studies[2]["study"])
    assert main(["search", f"{source}/studies/{study}", "--index", str(out), "--json",
                 "--mode", "images", "--k", "1"]) == 0  # fmt: skip
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 2  # one query per series of the CR study
    for answer in answers:  # each series finds itself (same pixels) first
        assert answer["hits"][0]["extra"]["modality"] == "CR"
        assert answer["hits"][0]["score"] > 0.999
    # a new study on the server is added by sync; a deleted one is withdrawn
    extra = tmp_path / "new"
    info = write_study(extra, first_index=300, modality="MR", series=1, instances=1, size=32)
    orthanc.upload(sorted(p for p in extra.rglob("*") if p.is_file()))
    orthanc.delete_study(str(marked_source.studies[0]["study"]))
    try:
        code = main(["index", "sync", str(out), "--pseudonym-key", str(key), "--remove-missing"])
        text = capsys.readouterr().out
        assert code == 0
        assert "added 1, removed 2" in text
        assert len(open_index(out, verify=True)) == 5
    finally:
        orthanc.upload(
            p
            for p in marked_source.files()
            if str(p.relative_to(marked_source.root)).startswith("s0/")
        )
        orthanc.delete_study(str(info["study"]))
    shutil.rmtree(extra)
