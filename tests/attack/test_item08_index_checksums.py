"""Item 8: every index file is checksummed; damage of the same size is refused on open,
and without verification a search still refuses scores unit vectors cannot have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import CorruptArtifactError, InputError
from medcap.index import build_index, open_index
from tests.attack.helpers import one_error_line, run_cli
from tests.index.vector_encoder import VectorEncoder, make_records, unit_vector

CFG = replace_set(DEFAULTS.index, shard_size=8)
DIM = 16


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    build_index(make_records(20), VectorEncoder(dim=DIM), tmp_path / "idx", CFG)
    return tmp_path / "idx"


def scale_stored_vectors(faiss_file: Path, count: int, factor: float) -> None:
    """Multiply the vectors of a flat FAISS file in place (the file keeps its size)."""
    data = bytearray(faiss_file.read_bytes())
    start = len(data) - count * DIM * 4  # a flat index ends with its float32 vectors
    vectors = np.frombuffer(bytes(data[start:]), dtype=np.float32) * np.float32(factor)
    data[start:] = vectors.tobytes()
    faiss_file.write_bytes(bytes(data))


def test_flipped_bytes_of_the_same_size_are_refused_on_open(index_dir: Path) -> None:
    path = index_dir / "image.faiss"
    data = bytearray(path.read_bytes())
    for offset in (len(data) - 5, len(data) - 37):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="checksum") as err:
        open_index(index_dir)
    assert str(path) in str(err.value)


def test_every_file_is_listed_with_a_checksum(index_dir: Path) -> None:
    raw = json.loads((index_dir / "manifest.json").read_text())
    assert raw["format_version"] == 2
    on_disk = {
        p.relative_to(index_dir).as_posix()
        for p in index_dir.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(raw["checksums"]) == set(raw["files"]) == on_disk
    assert all(v.startswith("xxh3_128:") for v in raw["checksums"].values())


def test_without_verification_impossible_scores_are_refused(index_dir: Path) -> None:
    scale_stored_vectors(index_dir / "image.faiss", 20, 10.0)
    with pytest.raises(CorruptArtifactError, match="checksum"):
        open_index(index_dir)
    index = open_index(index_dir, verify=False)  # sizes match: opens
    query = unit_vector("case_00003", DIM)[None]
    with pytest.raises(CorruptArtifactError, match="outside") as err:
        index.search(query, 3, target="images")
    assert str(index_dir / "image.faiss") in str(err.value)
    assert len(index.search(query, 3, target="captions")[0]) == 3  # the intact file answers
    assert len(index.search(query * 3, 3, target="captions")[0]) == 3  # |q| = 3 is no damage


def test_cli_no_verify_still_refuses_out_of_range_scores(
    capsys: pytest.CaptureFixture[str], attack_index: Path, query_png: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "index"
    shutil.copytree(attack_index, copy)
    count = open_index(copy).manifest.count
    scale_stored_vectors(copy / "image.faiss", count, 10.0)
    code, _, err = run_cli(capsys, "search", query_png, "--index", copy, "--mode", "images")
    assert code == 1 and "checksum" in one_error_line(err)
    code, _, err = run_cli(
        capsys, "search", query_png, "--index", copy, "--mode", "images", "--no-verify"
    )
    assert code == 1 and "outside [-1, 1]" in one_error_line(err)
    code, _, err = run_cli(capsys, "index", "info", copy)
    assert code == 1 and "image.faiss" in one_error_line(err)
    assert run_cli(capsys, "index", "info", copy, "--no-verify")[0] == 0


def test_a_format_1_index_needs_no_verify(index_dir: Path) -> None:
    path = index_dir / "manifest.json"
    raw = json.loads(path.read_text())
    raw["format_version"] = 1
    del raw["checksums"]
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="rebuild"):
        open_index(index_dir)
    assert len(open_index(index_dir, verify=False)) == 20
