"""Item 13: `medcap data phantoms DIR` never deletes a dataset it did not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcap.cli import main
from medcap.data import open_dataset
from tests.attack.helpers import assert_one_line_error


def _phantoms(out: Path, n: int, *extra: str) -> int:
    return main(["data", "phantoms", str(out), "--n", str(n), "--image-size", "32", *extra])


def test_item13_non_empty_folder_is_refused_and_left_intact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    assert _phantoms(out, 30) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert_one_line_error(_phantoms(out, 10), capsys.readouterr().err, str(out), "--overwrite")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "scan.dcm").write_bytes(b"a user's own file")
    assert_one_line_error(_phantoms(mine, 10), capsys.readouterr().err, "not empty")
    assert (mine / "data" / "scan.dcm").read_bytes() == b"a user's own file"


def test_item13_overwrite_replaces_only_the_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    assert _phantoms(out, 30) == 0
    (out / "notes.txt").write_text("keep me")
    assert _phantoms(out, 10, "--overwrite") == 0
    dataset = open_dataset(out)
    assert sum(dataset.count(s) for s in dataset.splits()) == 10
    assert (out / "notes.txt").read_text() == "keep me"
    assert _phantoms(tmp_path / "empty-ok", 10) == 0  # a new folder needs no flag
    (tmp_path / "empty").mkdir()
    assert _phantoms(tmp_path / "empty", 10) == 0  # nor an empty one


def test_oneline_phantoms_into_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.csv"
    target.write_text("a,b\n")
    for flags in ((), ("--overwrite",)):
        assert_one_line_error(
            _phantoms(target, 10, *flags), capsys.readouterr().err, str(target), "file"
        )
    assert target.read_text() == "a,b\n"
