"""`medcap data phantoms` and `medcap data info` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.data.phantoms import split_counts
from tests.data.layouts import phantom_records, write_folder_table


def test_phantoms_then_info_json_counts_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "phantoms"
    assert (
        main(["data", "phantoms", str(out), "--n", "50", "--seed", "2", "--image-size", "48"]) == 0
    )
    assert "wrote 50 phantoms" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "valid-00000-of-00001.parquet",
    ]
    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    splits = summary["splits"]
    assert list(splits) == ["train", "valid", "test"]
    assert {k: v["count"] for k, v in splits.items()} == split_counts(50)
    assert summary["total"] == 50 and summary["skipped"] == []
    train = splits["train"]
    assert train["image_size"]["most_common"] == "48x48"
    assert sum(train["modes"].values()) == train["count"] == train["images_checked"]
    assert set(train["modes"]) <= {"L", "RGB"} and train["cui_coverage"] == 1.0
    words = train["caption_words"]
    assert 4 <= words["median"] <= words["p90"] and words["mean"] > 4


def test_info_table_lists_unreadable_images_and_reader_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = phantom_records(6, seed=8)
    table = write_folder_table(
        tmp_path,
        records,
        fmt="csv",
        columns={
            "image": "image",
            "id": "image_id",
            "caption": "caption",
            "cui": "cui",
            "split": "split",
        },
    )
    bad = tmp_path / "images" / f"{records[0].image_id}.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with open(table, "a") as handle:  # a duplicate id: skipped by the reader
        handle.write(f"images/{records[1].image_id}.png,{records[1].image_id},again,,train,CT\n")
    assert main(["data", "info", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] == 6
    assert summary["skipped_counts"] == {"duplicate image_id": 1, "unreadable image": 1}
    unreadable = next(s for s in summary["skipped"] if s["reason"].startswith("cannot decode"))
    assert unreadable["image_id"] == records[0].image_id and str(bad) in unreadable["reason"]
    assert sum(s["unreadable_images"] for s in summary["splits"].values()) == 1

    assert main(["data", "info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "skipped 2 items" in text and "1 unreadable" in text and "total" in text


def test_info_errors_are_one_line_with_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["data", "info", "eltorio/ROCOv2-radiology"]) == 1
    err = capsys.readouterr().err
    assert "eltorio/ROCOv2-radiology" in err and err.count("\n") == 1


def test_phantoms_rejects_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "phantoms", str(tmp_path / "p"), "--n", "5", "--image-size", "8"]) == 1
    assert "too small" in capsys.readouterr().err
