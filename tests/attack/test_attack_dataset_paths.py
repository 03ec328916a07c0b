"""Item 5 (image paths stay inside the dataset folder) and non-UTF-8 tables (one line)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, replace_set
from medcap.data import open_dataset
from medcap.errors import InputError
from tests.attack.helpers import assert_one_line_error, write_blank_png

INSIDE = {"a": "images/a.png", "g": "images/sub/../a2.png"}  # g stays inside despite ..
ESCAPES = {
    "b": "../outside/secret.png",  # relative escape
    "c": "ABSOLUTE",  # replaced by the absolute path of outside/secret.png
    "d": "images/link.png",  # a symlink to outside/secret.png
    "h": "linkdir/secret.png",  # a folder symlink leading outside
}
URLS = {"e": "http://example.org/x.png", "f": "file:///etc/passwd"}


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    """`tmp/ds/` (images, symlinks out) beside `tmp/outside/secret.png`; the tables come later."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_blank_png(outside / "secret.png", 8, 8)
    root = tmp_path / "ds"
    (root / "images" / "sub").mkdir(parents=True)
    write_blank_png(root / "images" / "a.png", 8, 8)
    write_blank_png(root / "images" / "a2.png", 8, 8)
    os.symlink(outside / "secret.png", root / "images" / "link.png")
    os.symlink(outside, root / "linkdir")
    return root


def _rows(root: Path) -> list[dict[str, str]]:
    secret = str(root.parent / "outside" / "secret.png")
    paths = {**INSIDE, **ESCAPES, **URLS}
    return [
        {"image_id": i, "image": secret if p == "ABSOLUTE" else p, "caption": f"case {i}."}
        for i, p in sorted(paths.items())
    ]


def _write(root: Path, layout: str) -> Path:
    rows = _rows(root)
    if layout == "csv":
        with open(root / "captions.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif layout == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:  # parquet whose image cells hold a path and no bytes
        (root / "data").mkdir()
        table = pa.table(
            {
                "image": [{"bytes": None, "path": r["image"]} for r in rows],
                "image_id": [r["image_id"] for r in rows],
                "caption": [r["caption"] for r in rows],
            }
        )
        pq.write_table(table, root / "data" / "train-00000-of-00001.parquet")
    return root


@pytest.mark.parametrize("layout", ["csv", "jsonl", "parquet"])
def test_item05_rows_whose_image_leaves_the_dataset_are_skipped_with_a_reason(
    dataset_root: Path, layout: str
) -> None:
    dataset = open_dataset(_write(dataset_root, layout))
    assert sorted(r.image_id for r in dataset.records("train")) == sorted(INSIDE)
    reasons = {s.image_id: s.reason for s in dataset.skipped}
    assert sorted(reasons) == sorted({**ESCAPES, **URLS})
    for image_id in ESCAPES:
        assert "outside the dataset folder" in reasons[image_id], reasons[image_id]
        assert "--allow-outside-paths" in reasons[image_id]
    for image_id in URLS:
        assert "is a URL" in reasons[image_id]
    assert dataset.count("train") == len(INSIDE)

    allowed = replace_set(DEFAULTS.data, allow_outside_paths=True)
    opened = open_dataset(dataset_root, cfg=allowed)
    assert sorted(r.image_id for r in opened.records("train")) == sorted({**INSIDE, **ESCAPES})
    assert sorted(s.image_id for s in opened.skipped) == sorted(URLS)  # never URLs


def test_item05_release_layout_refuses_image_files_linked_outside(tmp_path: Path) -> None:
    outside = write_blank_png(tmp_path / "secret.png", 8, 8)
    root = tmp_path / "release"
    (root / "train").mkdir(parents=True)
    write_blank_png(root / "train" / "r1.png", 8, 8)
    os.symlink(outside, root / "train" / "r2.png")
    (root / "train_captions.csv").write_text("ID,Caption\nr1,first.\nr2,second.\n")
    dataset = open_dataset(root)
    assert [r.image_id for r in dataset.records("train")] == ["r1"]
    assert "outside the dataset folder" in dataset.skipped[0].reason
    allowed = open_dataset(root, cfg=replace_set(DEFAULTS.data, allow_outside_paths=True))
    assert [r.image_id for r in allowed.records("train")] == ["r1", "r2"]


def test_item05_cli_skips_by_default_and_allows_with_the_flag(
    dataset_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(dataset_root, "csv")
    assert main(["data", "info", str(dataset_root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] == len(INSIDE)
    assert {s["image_id"] for s in summary["skipped"]} == set(ESCAPES) | set(URLS)
    assert main(["data", "info", str(dataset_root), "--json", "--allow-outside-paths"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == len(INSIDE) + len(ESCAPES)


@pytest.mark.parametrize(
    "command",
    [
        ["data", "info"],
        ["index", "build"],
        ["index", "add"],
        ["train"],
        ["train", "generator"],
        ["eval", "retrieval"],
        ["eval", "captions"],
        ["eval", "concepts"],
        ["caption"],
    ],
)
def test_item05_every_command_reading_a_dataset_takes_the_options(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # option names unabridged in the help table
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-outside-paths" in text and "--encoding" in text


# ---- non-UTF-8 tables -------------------------------------------------------------------


def _latin1_table(root: Path) -> Path:
    write_blank_png(root / "x.png", 8, 8)
    table = root / "captions.csv"
    table.write_bytes("image,caption\nx.png,Épanchement pleural à droite.\n".encode("latin-1"))
    return table


def test_oneline_non_utf8_csv_names_the_file_and_the_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _latin1_table(tmp_path)
    code = main(["data", "info", str(table)])
    assert_one_line_error(code, capsys.readouterr().err, str(table), "utf-8", "--encoding")
    assert main(["data", "info", str(table), "--encoding", "latin-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 1
    config = replace_set(DEFAULTS.data, encoding="latin-1")
    [record] = open_dataset(table, cfg=config).records("train")
    assert record.caption == "Épanchement pleural à droite."
    assert_one_line_error(
        main(["data", "info", str(table), "--encoding", "klingon"]),
        capsys.readouterr().err,
        "klingon",
    )


def test_oneline_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    write_blank_png(tmp_path / "x.png", 8, 8)
    (tmp_path / "captions.jsonl").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"image": "x.png", "caption": "ok."}).encode() + b"\n"
    )
    [record] = open_dataset(tmp_path / "captions.jsonl").records("train")
    assert record.caption == "ok."
    with pytest.raises(InputError, match="not valid utf-8"):
        (tmp_path / "bad.jsonl").write_bytes(b'{"image": "x.png", "caption": "\xff"}\n')
        list(open_dataset(tmp_path / "bad.jsonl").records("train"))
