"""Readers: layouts a (Hub parquet), b (official release and Kaggle), c (folder + CSV/JSONL)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcap.data import load_image, normalise_split, open_dataset
from medcap.data.parquet_reader import ParquetDataset
from medcap.data.release_reader import ReleaseDataset
from medcap.data.table_reader import TableDataset
from medcap.types import Record
from tests.data.layouts import (
    phantom_records,
    roco_id,
    write_folder_table,
    write_hub_parquet,
    write_release,
)


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return phantom_records(24, seed=3)


def _by_split(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.split, []).append(r)
    return out


def _check_same(read: list[Record], expected: list[Record], split: str) -> None:
    assert [r.image_id for r in read] == [r.image_id for r in expected]
    assert [r.caption for r in read] == [r.caption for r in expected]
    assert [r.cuis for r in read] == [r.cuis for r in expected]
    assert {r.split for r in read} == {split}
    for got, want in zip(read[:3], expected[:3], strict=False):
        assert np.array_equal(np.asarray(load_image(got.image)), np.asarray(load_image(want.image)))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("validation", "valid"),
        ("val", "valid"),
        ("VALID", "valid"),
        ("dev", "valid"),
        ("training", "train"),
        ("test", "test"),
        ("holdout", "holdout"),
    ],
)
def test_split_names_are_normalised(name: str, expected: str) -> None:
    assert normalise_split(name) == expected


def test_layout_a_hub_parquet_with_validation_split_and_shards(
    tmp_path: Path, records: list[Record]
) -> None:
    write_hub_parquet(tmp_path, records, shards=2)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, ParquetDataset)
    assert ds.splits() == ["train", "valid", "test"]
    for split, expected in _by_split(records).items():
        read = list(ds.records(split))
        order = {r.image_id: i for i, r in enumerate(expected)}  # shards interleave rows
        read.sort(key=lambda r: order[r.image_id])
        _check_same(read, expected, split)
        assert ds.count(split) == len(expected)
        assert all(r.image.data for r in read)  # bytes stay in the record, lazily decoded
    assert ds.records("validation") is not None and ds.count("val") == len(
        _by_split(records)["valid"]
    )


def test_layout_a_skips_and_lists_duplicates_and_empty_captions(
    tmp_path: Path, records: list[Record]
) -> None:
    train = [r for r in records if r.split == "train"]
    rows = [
        {
            "image": {"bytes": r.image.data, "path": r.image.path},
            "image_id": r.image_id,
            "caption": r.caption,
            "cui": list(r.cuis),
        }
        for r in train
    ]
    rows.append(dict(rows[0]))  # a duplicate id, as in the Hub copy's train split
    rows.append(dict(rows[1], image_id="blank", caption="   "))
    rows.append(dict(rows[2], image_id="no_caption", caption=None))
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "train-00000-of-00001.parquet")
    ds = open_dataset(tmp_path)
    kept = list(ds.records("train"))
    assert [r.image_id for r in kept] == [r.image_id for r in train]
    assert ds.count("train") == len(train)
    reasons = sorted(s.reason.split(" (")[0] for s in ds.skipped)
    assert reasons == ["duplicate image_id", "empty caption", "empty caption"]
    duplicate = next(s for s in ds.skipped if s.reason.startswith("duplicate"))
    assert duplicate.image_id == train[0].image_id and duplicate.row == len(train)
    assert duplicate.source == "data/train-00000-of-00001.parquet"
    list(ds.records("train"))  # a second pass does not list the same rows twice
    assert len(ds.skipped) == 3


def test_layout_a_extra_columns_and_split_column_and_single_file(
    tmp_path: Path, records: list[Record]
) -> None:
    rows = [
        {
            "image": r.image.data,
            "image_id": r.image_id,
            "caption": r.caption,
            "cui": ";".join(r.cuis),
            "split": {"train": "training", "valid": "val", "test": "test"}[r.split],
            "modality": r.extra["modality"],
        }
        for r in records
    ]
    path = tmp_path / "all.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ds = open_dataset(path)
    assert ds.splits() == ["train", "valid", "test"]
    for split, expected in _by_split(records).items():
        read = list(ds.records(split))
        _check_same(read, expected, split)
        assert [r.extra["modality"] for r in read] == [r.extra["modality"] for r in expected]


def test_layout_b_official_release(tmp_path: Path, records: list[Record]) -> None:
    expected = write_release(tmp_path / "rocov2", records)
    (tmp_path / "rocov2" / "train" / f"{roco_id('train', 1)}.png").unlink()  # an image gone missing
    ds = open_dataset(tmp_path / "rocov2")
    assert isinstance(ds, ReleaseDataset)
    assert ds.splits() == ["train", "valid", "test"]
    for split in ("valid", "test"):
        _check_same(list(ds.records(split)), expected[split], split)
    train = list(ds.records("train"))
    _check_same(train, expected["train"][1:], "train")
    assert ds.count("train") == len(expected["train"]) - 1
    assert [s.image_id for s in ds.skipped] == [roco_id("train", 1)]
    assert "image file not found" in ds.skipped[0].reason
    assert ds.cui_names() == {"C0040405": "X-Ray Computed Tomography"}


def test_layout_b_kaggle_variant_and_missing_concepts(
    tmp_path: Path, records: list[Record]
) -> None:
    expected = write_release(tmp_path / "kaggle", records, kaggle=True)
    (tmp_path / "kaggle" / "test_concepts.csv").unlink()
    ds = open_dataset(tmp_path / "kaggle")
    _check_same(list(ds.records("train")), expected["train"], "train")
    test = list(ds.records("test"))
    assert [r.caption for r in test] == [r.caption for r in expected["test"]]
    assert all(r.cuis == () for r in test)


def test_layout_b_fingerprint_is_stable_and_changes_with_content(
    tmp_path: Path, records: list[Record]
) -> None:
    write_release(tmp_path / "r", records)
    first = open_dataset(tmp_path / "r").fingerprint()
    assert first == open_dataset(tmp_path / "r").fingerprint()
    captions = tmp_path / "r" / "valid_captions.csv"
    captions.write_text(captions.read_text().replace("cm", "mm", 1))
    assert open_dataset(tmp_path / "r").fingerprint() != first


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_layout_c_folder_with_table_and_column_options(
    tmp_path: Path, records: list[Record], fmt: str
) -> None:
    columns = {
        "image": "file",
        "id": "uid",
        "caption": "report",
        "cui": "concept_ids",
        "split": "subset",
    }
    table = write_folder_table(tmp_path, records, fmt=fmt, columns=columns)
    ds = open_dataset(
        tmp_path,
        image_column="file",
        id_column="uid",
        caption_column="report",
        cui_column="concept_ids",
        split_column="subset",
    )
    assert isinstance(ds, TableDataset)
    assert ds.splits() == ["train", "valid", "test"]
    for split, expected in _by_split(records).items():
        read = list(ds.records(split))
        _check_same(read, expected, split)
        assert read[0].extra["modality"] == expected[0].extra["modality"]
        assert Path(read[0].image.path or "").is_file()
    assert open_dataset(table, image_column="file", caption_column="report").count("train") == len(
        records
    )


def test_layout_c_defaults_file_name_column_ids_from_file_names_and_bad_rows(
    tmp_path: Path, records: list[Record]
) -> None:
    (tmp_path / "imgs").mkdir()
    with open(tmp_path / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption"])
        for r in records[:5]:
            (tmp_path / "imgs" / f"{r.image_id}.png").write_bytes(r.image.data or b"")
            writer.writerow([f"imgs/{r.image_id}.png", r.caption])
        writer.writerow(["imgs/missing.png", "A caption for an image that is not there."])
        writer.writerow([f"imgs/{records[0].image_id}.png", ""])
    ds = open_dataset(tmp_path / "data.csv")
    assert ds.splits() == ["train"]
    assert [r.image_id for r in ds.records("train")] == [r.image_id for r in records[:5]]
    reasons = [s.reason for s in ds.skipped]
    assert (
        len(reasons) == 2 and "image file not found" in reasons[0] and reasons[1] == "empty caption"
    )


def test_jsonl_bad_line_is_skipped_not_fatal(tmp_path: Path, records: list[Record]) -> None:
    table = write_folder_table(
        tmp_path,
        records[:4],
        fmt="jsonl",
        columns={
            "image": "image",
            "id": "image_id",
            "caption": "caption",
            "cui": "cui",
            "split": "split",
        },
    )
    table.write_text(table.read_text() + "{not json\n")
    ds = open_dataset(tmp_path)
    assert sum(ds.count(s) for s in ds.splits()) == 4
    assert [s.row for s in ds.skipped] == [4] and "not valid JSON" in ds.skipped[0].reason


def test_phantom_fingerprint_is_stable(phantom_dir: Path) -> None:
    assert open_dataset(phantom_dir).fingerprint() == open_dataset(phantom_dir).fingerprint()
    assert len(open_dataset(phantom_dir).fingerprint()) == 64
