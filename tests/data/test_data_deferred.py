"""Deferred image reading: a parquet dataset's records without image cells, read later by
`fetch_images` (what a cluster's read tasks do), equal the records read at once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcap.data import TableImageRef, fetch_images, load_image, open_dataset
from medcap.errors import ImageDecodeError
from medcap.types import Record
from tests.data.layouts import phantom_records


def _write(path: Path, rows: list[dict[str, object]], group_rows: int) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group_rows)


@pytest.fixture
def mixed_file(tmp_path: Path) -> tuple[Path, list[Record]]:
    """One parquet file, splits in a column, small row groups, one missing image cell."""
    records = phantom_records(30)
    rows: list[dict[str, object]] = [
        {
            "image": {"bytes": r.image.data, "path": r.image.path},
            "image_id": r.image_id,
            "caption": r.caption,
            "split": r.split,
            "modality": r.extra["modality"],
        }
        for r in records
    ]
    rows[5]["image"] = None
    path = tmp_path / "all.parquet"
    _write(path, rows, group_rows=4)
    return path, records


def test_deferred_records_fetch_to_the_records_read_at_once(
    mixed_file: tuple[Path, list[Record]],
) -> None:
    path, _ = mixed_file
    eager = open_dataset(path)
    lazy = open_dataset(path).deferred()
    for split in eager.splits():
        read = list(eager.records(split))
        deferred = [r for r in lazy.records(split) if r.image_id in {x.image_id for x in read}]
        assert all(isinstance(r.image, TableImageRef) for r in deferred)
        assert all(r.image.data is None for r in deferred)
        fetched = fetch_images(deferred[::-1])[::-1]  # any order, across row groups
        assert fetched == read  # ids, captions, extra columns and the image bytes


def test_a_missing_deferred_cell_fails_to_decode_with_its_reason(
    mixed_file: tuple[Path, list[Record]],
) -> None:
    path, records = mixed_file
    lazy = open_dataset(path).deferred()
    missing = next(r for r in lazy.records(records[5].split) if r.image_id == records[5].image_id)
    fetched = fetch_images([missing])[0]
    assert fetched.image.data is None and fetched.image.path is None
    with pytest.raises(ImageDecodeError, match="neither bytes nor a path"):
        load_image(fetched.image)
    # read at once, the dataset skips that row itself
    eager = open_dataset(path)
    assert records[5].image_id not in {r.image_id for r in eager.records(records[5].split)}


def test_files_without_an_id_column_read_their_images_at_once(tmp_path: Path) -> None:
    records = phantom_records(6)
    rows = [{"image": {"bytes": r.image.data, "path": f"{r.image_id}.png"}, "caption": r.caption}
            for r in records]  # fmt: skip
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "train-00000-of-00001.parquet", rows, group_rows=2)
    lazy = list(open_dataset(tmp_path).deferred().records("train"))
    assert [r.image_id for r in lazy] == [r.image_id for r in records]  # from the stored names
    assert all(r.image.data for r in lazy) and fetch_images(lazy) == lazy


def test_a_deferred_path_outside_the_dataset_is_refused_like_an_eager_one(tmp_path: Path) -> None:
    records = phantom_records(2)
    outside = tmp_path / "outside.png"
    assert records[0].image.data is not None
    outside.write_bytes(records[0].image.data)
    root = tmp_path / "dataset"
    (root / "data").mkdir(parents=True)
    rows = [{"image": {"bytes": None, "path": "../outside.png"}, "image_id": "escape",
             "caption": "x"}]  # fmt: skip
    _write(root / "data" / "train-00000-of-00001.parquet", rows, group_rows=1)
    assert list(open_dataset(root).records("train")) == []  # eager: skipped with a reason
    (deferred,) = open_dataset(root).deferred().records("train")
    fetched = fetch_images([deferred])[0]
    with pytest.raises(ImageDecodeError, match="outside the dataset folder"):
        load_image(fetched.image)
