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


def test_set_index_verify_false_works_as_no_verify(
    capsys: pytest.CaptureFixture[str], attack_index: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "index"
    shutil.copytree(attack_index, copy)
    scale_stored_vectors(copy / "image.faiss", open_index(copy).manifest.count, 10.0)
    assert run_cli(capsys, "index", "info", copy)[0] == 1
    assert run_cli(capsys, "--set", "index.verify=false", "index", "info", copy)[0] == 0
    code, _, err = run_cli(capsys, "--set", "index.verify=false", "index", "info", copy, "--verify")
    assert code == 1 and "checksum" in one_error_line(err)  # the flag wins over the setting


def test_app_no_verify_travels_as_a_setting(attack_index: Path, tmp_path: Path) -> None:
    from medcap.app.session import AppLoadError, open_app_index
    from medcap.cli.browser import server_settings
    from medcap.config import use_config
    from medcap.config_files import load_config

    copy = tmp_path / "index"
    shutil.copytree(attack_index, copy)
    path = copy / "manifest.json"
    raw = json.loads(path.read_text())
    raw["format_version"] = 1  # no checksums: opens only unverified
    del raw["checksums"]
    path.write_text(json.dumps(raw))
    assert server_settings(None) == []
    assert server_settings(False) == ["index.verify=false"]
    with pytest.raises(AppLoadError, match="format 1") as err:
        open_app_index(copy, device="cpu")
    assert err.value.kind == "invalid"
    previous = use_config(load_config(None, server_settings(False)))  # what the server applies
    try:
        assert len(open_app_index(copy, device="cpu").retriever) == raw["count"]
    finally:
        use_config(previous)
