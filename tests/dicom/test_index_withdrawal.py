"""`medcap index remove` and `index sync` on indexes built from a DICOM folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medcap.cli import main
from medcap.index import open_index
from tests.support.dicom_files import files_under, find_markers, write_study


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _build(
    capsys: pytest.CaptureFixture[str], data: Path, out: Path, key: Path, *extra: str
) -> None:
    code, _out, err = _run(
        capsys, "index", "build", "--data", str(data), "--out", str(out), "--model",
        "medcap-tiny", "--pseudonym-key", str(key), "--thumbnail-size", "16", *extra,
    )  # fmt: skip
    assert code == 0, err


@pytest.fixture(scope="module")
def five_studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("withdraw") / "src"
    for s in range(5):
        write_study(root, first_index=s * 10, modality=("CT", "MR", "CR")[s % 3], series=2,
                    instances=1, size=32)  # fmt: skip
    return root


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_remove_withdraws_cases_everywhere(
    five_studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], index_type: str
) -> None:
    out, key = tmp_path / "index", tmp_path / "k"
    _build(capsys, five_studies, out, key, "--index-type", index_type)
    before = open_index(out)
    ids = before.image_ids()
    vectors = {t: before.embeddings(t) for t in ("images", "captions")}  # type: ignore[arg-type]
    gone = {ids[1], ids[6]}
    ids_file = tmp_path / "withdraw.txt"
    ids_file.write_text(f"{ids[6]}\n")
    code, text, err = _run(
        capsys, "index", "remove", str(out), "--ids-file", str(ids_file), "--ids", ids[1],
        "se-not-indexed",
    )  # fmt: skip
    assert code == 0, err
    assert "removed 2 cases" in text and "1 ids were not in the index" in text
    after = open_index(out, verify=True)  # every checksum still matches
    assert after.manifest.index.type == index_type
    assert len(after) == len(before) - 2
    assert after.image_ids() == [i for i in ids if i not in gone]  # order kept
    assert all(after.thumbnail(i) is None for i in gone)
    assert after.thumbnail(ids[0]) is not None
    # no search returns a withdrawn case, and the remaining vectors are the ones indexed
    for target in ("images", "captions"):
        for hits in after.search(vectors[target], len(after), target=target):  # type: ignore[arg-type]
            assert gone.isdisjoint(h.image_id for h in hits)
            assert len(hits) == len(after)
    keep_rows = [ids.index(i) for i in after.image_ids()]
    assert np.allclose(after.embeddings("images"), vectors["images"][keep_rows], atol=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["count"] for r in manifest["removals"]] == [2]
    # the withdrawn ids are nowhere in the directory (raw bytes or decoded parquet)
    assert find_markers(gone, files_under(out), {}) == []
    assert find_markers({ids[0]}, files_under(out), {})  # ... where a kept id is found


def test_remove_refusals_are_one_line(
    five_studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    _build(capsys, five_studies, out, tmp_path / "k")
    code, _out, err = _run(capsys, "index", "remove", str(out), "--ids", "nope")
    assert code != 0 and "none of the 1 ids" in err and len(err.strip().splitlines()) == 1
    code, _out, err = _run(capsys, "index", "remove", str(out))
    assert code != 0 and "--ids" in err


def test_sync_adds_new_studies_and_removes_gone_ones(
    five_studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    shutil.copytree(five_studies, src)
    out, key = tmp_path / "index", tmp_path / "k"
    _build(capsys, src, out, key)
    start = set(open_index(out).image_ids())
    write_study(src, first_index=500, series=3, instances=1, size=32)
    shutil.rmtree(src / "s0")  # the first study leaves the folder
    code, text, err = _run(capsys, "index", "sync", str(out), "--pseudonym-key", str(key))
    assert code == 0, err
    assert "added 3" in text and "2 gone" in text
    grown = set(open_index(out).image_ids())
    assert len(grown) == len(start) + 3 and start < grown
    code, text, err = _run(
        capsys, "index", "sync", str(out), "--pseudonym-key", str(key), "--remove-missing"
    )
    assert code == 0, err
    assert "added 0, removed 2" in text
    assert len(open_index(out, verify=True)) == len(start) + 1
    code, _text, err = _run(
        capsys, "index", "sync", str(out), "--pseudonym-key", str(tmp_path / "other.key")
    )
    assert code != 0 and "is not the key" in err
