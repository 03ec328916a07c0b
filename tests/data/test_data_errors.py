"""Every user-facing data error: one line, naming the file/column/dataset and the fix."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcap.data import open_dataset
from medcap.errors import CorruptArtifactError, InputError, MedcapError, OfflineFetchError
from medcap.types import Record
from tests.data.layouts import phantom_records, write_hub_parquet, write_release


def _message(exc_info: pytest.ExceptionInfo[MedcapError]) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return phantom_records(9, seed=4)


def test_missing_path_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path / "nowhere")
    message = _message(info)
    assert str(tmp_path / "nowhere") in message and "not found" in message
    assert "medcap data phantoms" in message


def test_hub_name_offline_names_the_dataset_and_alternatives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(OfflineFetchError) as info:
        open_dataset("eltorio/ROCOv2-radiology")
    message = _message(info)
    assert "eltorio/ROCOv2-radiology" in message
    assert "local directory" in message and "medcap data phantoms" in message


def test_hub_name_found_in_the_local_cache_reads_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, records: list[Record]
) -> None:
    repo = tmp_path / "hub" / "datasets--eltorio--ROCOv2-radiology"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    write_hub_parquet(repo / "snapshots" / "abc123", records, shards=1)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ds = open_dataset("eltorio/ROCOv2-radiology")
    assert ds.name == "eltorio/ROCOv2-radiology"
    assert sum(ds.count(s) for s in ds.splits()) == len(records)


def test_parquet_missing_caption_column_names_file_column_and_columns(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"image": [b"x"], "image_id": ["a"], "text": ["hello"]}), path)
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path)
    message = _message(info)
    assert str(path) in message and "'caption'" in message
    assert "columns present: image, image_id, text" in message and "--caption-column" in message
    assert open_dataset(tmp_path, caption_column="text").count("train") == 1


def test_explicit_column_that_is_missing_is_an_error(tmp_path: Path, records: list[Record]) -> None:
    write_hub_parquet(tmp_path, records, shards=1)
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path, cui_column="concepts")
    message = _message(info)
    assert "'concepts'" in message and "columns present: image, image_id, caption, cui" in message


def test_csv_missing_image_column(tmp_path: Path) -> None:
    table = tmp_path / "cases.csv"
    table.write_text("path_to_png,caption\na.png,hello\n")
    with pytest.raises(InputError) as info:
        open_dataset(table)
    message = _message(info)
    assert str(table) in message and "image column 'image'" in message
    assert "columns present: path_to_png, caption" in message and "--image-column" in message


def test_jsonl_missing_caption_column(tmp_path: Path) -> None:
    table = tmp_path / "cases.jsonl"
    table.write_text('{"image": "a.png", "findings": "x"}\n')
    with pytest.raises(InputError) as info:
        open_dataset(table)
    assert "caption column 'caption'" in _message(info) and "image, findings" in str(info.value)


def test_release_missing_caption_column_and_missing_image_folder(
    tmp_path: Path, records: list[Record]
) -> None:
    root = tmp_path / "rel"
    write_release(root, records)
    captions = root / "test_captions.csv"
    rows = list(csv.reader(captions.open()))
    with open(captions, "w", newline="") as handle:
        csv.writer(handle).writerows([["ID", "Text"], *rows[1:]])
    with pytest.raises(InputError) as info:
        open_dataset(root)
    message = _message(info)
    assert (
        str(captions) in message
        and "'Caption'" in message
        and "columns present: ID, Text" in message
    )

    root2 = tmp_path / "rel2"
    write_release(root2, records)
    for image in (root2 / "valid").iterdir():
        image.unlink()
    (root2 / "valid").rmdir()
    with pytest.raises(InputError) as info:
        open_dataset(root2)
    message = _message(info)
    assert "no image folder for split 'valid'" in message and "valid_images/valid/" in message


def test_unknown_split_lists_available_ones(phantom_dataset: object) -> None:
    from medcap.data.dataset import Dataset

    assert isinstance(phantom_dataset, Dataset)
    with pytest.raises(InputError) as info:
        next(phantom_dataset.records("holdout"))
    assert "no split 'holdout'" in _message(info) and "train, valid, test" in str(info.value)


def test_empty_folder_and_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path)
    assert "no dataset found" in _message(info)
    odd = tmp_path / "cases.xlsx"
    odd.write_bytes(b"PK")
    with pytest.raises(InputError) as info:
        open_dataset(odd)
    assert "unsupported dataset file type '.xlsx'" in _message(info)
    (tmp_path / "a.csv").write_text("image,caption\n")
    (tmp_path / "b.csv").write_text("image,caption\n")
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path)
    assert "several tables found (a.csv, b.csv)" in _message(info)


def test_truncated_parquet_is_a_corrupt_artifact(tmp_path: Path, records: list[Record]) -> None:
    write_hub_parquet(tmp_path, records, shards=1)
    shard = tmp_path / "data" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(CorruptArtifactError) as info:
        open_dataset(tmp_path)
    assert str(shard) in _message(info)
