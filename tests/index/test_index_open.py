"""Opening an index: damaged files are named, other encoders and old formats refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import CorruptArtifactError, IndexMismatchError, InputError
from medcap.index import build_index, open_index
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=16)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("open") / "idx"
    build_index(make_records(40), VectorEncoder(), out, CFG)
    return out


@pytest.fixture()
def copy(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "idx"
    shutil.copytree(built, target)
    return target


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_round_trip_opens_and_searches_the_same(built: Path) -> None:
    a = open_index(built, preload=True)
    b = open_index(built)
    q = a.embeddings("captions")[:5]
    assert a.search(q, 4, target="images") == b.search(q, 4, target="images")
    assert a.manifest == b.manifest


@pytest.mark.parametrize(
    "name", ["image.faiss", "caption.faiss", "items.parquet", "emb/image_00001.npy"]
)
def test_truncated_file_is_named(copy: Path, name: str) -> None:
    _truncate(copy / name)
    with pytest.raises(CorruptArtifactError, match="truncated") as err:
        open_index(copy)
    assert str(copy / name) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["image.faiss", "items.parquet"])
def test_missing_file_is_named(copy: Path, name: str) -> None:
    (copy / name).unlink()
    with pytest.raises(CorruptArtifactError, match="missing") as err:
        open_index(copy)
    assert str(copy / name) in str(err.value)


def test_damaged_faiss_of_the_right_size_is_named_when_read(copy: Path) -> None:
    path = copy / "image.faiss"
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, garbage content
    index = open_index(copy, verify=False)  # sizes match, no checksums: FAISS reads lazily
    with pytest.raises(CorruptArtifactError, match="damaged") as err:
        index.search(np.ones((1, 16), np.float32) / 4, 3, target="images")
    assert str(path) in str(err.value)
    with pytest.raises(CorruptArtifactError, match="image.faiss"):
        open_index(copy, preload=True, verify=False)


def test_damaged_parquet_of_the_right_size_is_named(copy: Path) -> None:
    path = copy / "items.parquet"
    path.write_bytes(b"\x01" * path.stat().st_size)
    with pytest.raises(CorruptArtifactError, match="items.parquet"):
        open_index(copy)


def test_other_encoder_is_refused_naming_both_fingerprints(built: Path) -> None:
    with pytest.raises(IndexMismatchError) as err:
        open_index(built, expected_fingerprint="feedface0000")
    assert "vec-0001" in str(err.value) and "feedface0000" in str(err.value)
    assert len(open_index(built, expected_fingerprint="vec-0001")) == 40


def test_unknown_format_version_is_refused(copy: Path) -> None:
    raw = json.loads((copy / "manifest.json").read_text())
    raw["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(CorruptArtifactError, match="format version 99"):
        open_index(copy)


def test_count_mismatch_is_reported(copy: Path) -> None:
    raw = json.loads((copy / "manifest.json").read_text())
    raw["count"] = 41
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(CorruptArtifactError, match="40 rows but the manifest says 41"):
        open_index(copy)


def test_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_index(tmp_path / "nothing")
    with pytest.raises(InputError, match="no manifest.json"):
        open_index(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        open_index(tmp_path / "x")
