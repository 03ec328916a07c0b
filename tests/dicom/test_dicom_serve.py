"""`medcap serve` on a DICOM index: viewer links with the key, none without, a wrong key
refused, and withdrawn cases gone from a running service."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest

from medcap.cli import main
from medcap.data.dicom import load_pseudonym_key
from tests.dicom.conftest import MarkedSource
from tests.serve.served import serving

VIEWER = "http://viewer.example/view?study={StudyInstanceUID}"


@pytest.fixture(scope="module")
def dicom_index(
    marked_source: MarkedSource, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("dicom_serve")
    out, key = base / "index", base / "medcap.key"
    code = main([
        "index", "build", "--data", str(marked_source.root), "--out", str(out),
        "--model", "medcap-tiny", "--pseudonym-key", str(key), "--thumbnail-size", "16",
        "--captions", str(marked_source.captions),
    ])  # fmt: skip
    assert code == 0
    return out, key


def test_viewer_links_and_live_withdrawal(
    dicom_index: tuple[Path, Path], marked_source: MarkedSource, tmp_path: Path
) -> None:
    out, key = dicom_index
    index_dir = tmp_path / "index"
    import shutil

    shutil.copytree(out, index_dir)
    pseudonyms = load_pseudonym_key(key)
    study_uids = {str(s["study"]) for s in marked_source.studies}
    with serving(index_dir, tmp_path / "serve.log", "--pseudonym-key", str(key),
                 "--viewer-url", VIEWER) as server:  # fmt: skip
        reply = server.post_json("/v1/search", {"text": "chest CT", "k": 6})
        assert reply.status == 200, reply.body
        hits = reply.json()["hits"]
        assert len(hits) == 6
        for hit in hits:
            url = hit["viewer_url"]
            uid = parse_qs(urlparse(url).query)["study"][0]
            assert uid in study_uids  # the real study, found again from the key ...
            assert pseudonyms.pseudonym("study", uid) == hit["metadata"]["study"]  # ... its own
            assert "viewer_url" not in hit["metadata"]
        case = server.get(f"/v1/cases/{quote(hits[0]['image_id'], safe='')}").json()
        assert case["viewer_url"] == hits[0]["viewer_url"]
        # withdraw two cases while the service runs: they are never answered again
        gone = [hits[0]["image_id"], hits[3]["image_id"]]
        assert main(["index", "remove", str(index_dir), "--ids", *gone]) == 0
        reply = server.post_json("/v1/search", {"text": "chest CT", "k": 6})
        after = [h["image_id"] for h in reply.json()["hits"]]
        assert len(after) == 4 and not set(gone) & set(after)
        assert server.get(f"/v1/cases/{quote(gone[0], safe='')}").status == 404
        assert server.get("/v1/index").json()["count"] == 4
    assert "reloaded" in (tmp_path / "serve.log").read_text()


def test_no_key_no_link_and_wrong_key_refused(
    dicom_index: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _key = dicom_index
    with serving(out, tmp_path / "serve.log") as server:
        hits = server.post_json("/v1/search", {"text": "chest", "k": 3}).json()["hits"]
        assert hits and all("viewer_url" not in h for h in hits)
    other = tmp_path / "other.key"
    main(["index", "build", "--help"])  # (any command; creates nothing)
    capsys.readouterr()
    from medcap.data.dicom import load_pseudonym_key as make_key

    make_key(other)
    code = main(["serve", "--index", str(out), "--pseudonym-key", str(other),
                 "--viewer-url", VIEWER])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "is not the key" in err and len(err.strip().splitlines()) == 1
    code = main(["serve", "--index", str(out), "--viewer-url", VIEWER])
    assert code != 0 and "need both" in capsys.readouterr().err
