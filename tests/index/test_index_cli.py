"""CLI: `medcap index build|info|add` and `medcap search` on real phantom artifacts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def queries(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Query files: two test images, one train image named by its image_id, a text file."""
    folder = tmp_path_factory.mktemp("queries")
    test = list(phantom_dataset.records("test"))[:2]
    train = next(iter(phantom_dataset.records("train")))
    files = {}
    for name, record in (("test0", test[0]), ("test1", test[1]), ("train0", train)):
        path = folder / "images" / f"{record.image_id}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(record.image.data)
        files[name] = path
    files["notes"] = folder / "notes.txt"
    files["notes"].write_text("not an image\n")
    files["folder"] = folder / "images"
    return files


def test_index_build_info_add(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "idx"
    code, stdout, _ = _run(
        capsys, "index", "build", "--data", str(phantom_dir), "--model", str(trained_checkpoint),
        "--out", str(out), "--shard-size", "50", "--thumbnail-size", "0",
    )  # fmt: skip
    assert code == 0
    assert "indexed 160 cases" in stdout and "flat (Flat)" in stdout
    assert (out / "manifest.json").exists() and not (out / "thumbnails.parquet").exists()

    code, stdout, _ = _run(capsys, "index", "info", str(out))
    assert code == 0
    assert "160 (dim 64" in stdout and "flat (Flat)" in stdout and "[train] 160 cases" in stdout
    assert "search      on a GPU: faiss-gpu or exact torch matmul" in stdout
    code, stdout, _ = _run(capsys, "index", "info", str(out), "--json")
    manifest = json.loads(stdout)
    assert manifest["count"] == 160 and manifest["encoder"]["checkpoint"] == str(trained_checkpoint)

    code, stdout, _ = _run(
        capsys, "index", "add", str(out), "--data", str(phantom_dir), "--split", "valid"
    )
    assert code == 0 and "added 20 cases" in stdout and "now holds 180" in stdout
    code, _, err = _run(
        capsys, "index", "add", str(out), "--data", str(phantom_dir), "--split", "valid"
    )
    assert code == 1 and "no new cases" in _one_error_line(err)

    code, _, err = _run(
        capsys, "index", "build", "--data", str(phantom_dir), "--model", str(trained_checkpoint),
        "--out", str(out),
    )  # fmt: skip
    assert code == 1 and "--overwrite" in _one_error_line(err)
    code, _, err = _run(
        capsys, "index", "build", "--data", str(phantom_dir), "--out", str(tmp_path / "x"),
        "--index-type", "lsh",
    )  # fmt: skip
    assert code == 1 and "unknown --index-type 'lsh'" in _one_error_line(err)
    code, _, err = _run(
        capsys, "index", "build", "--data", str(phantom_dir), "--out", str(tmp_path / "x"),
        "--split", "nope",
    )  # fmt: skip
    assert code == 1 and "no split 'nope'" in _one_error_line(err)


def test_search_prints_a_table(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, queries: dict[str, Path]
) -> None:
    code, stdout, _ = _run(
        capsys, "search", str(queries["test0"]), "--index", str(phantom_index_dir)
    )
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith(f"query: {queries['test0']}") and "captions" in lines[0]
    assert lines[1].split() == ["rank", "score", "image_id", "modality", "cuis", "caption"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert all(r[2].startswith("phantom_train_") for r in rows)
    assert [float(r[1]) for r in rows] == sorted((float(r[1]) for r in rows), reverse=True)


def test_search_json_for_files_and_text(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, queries: dict[str, Path]
) -> None:
    code, stdout, _ = _run(
        capsys, "search", str(queries["test0"]), str(queries["test1"]), "--index",
        str(phantom_index_dir), "--k", "3", "--json",
    )  # fmt: skip
    assert code == 0
    results = json.loads(stdout)
    code, stdout, _ = _run(
        capsys, "search", "--index", str(phantom_index_dir), "--k", "3", "--json",
        "--text", "CT of the chest",
    )  # fmt: skip
    assert code == 0
    results += json.loads(stdout)
    assert [r["query"] for r in results] == [
        str(queries["test0"]), str(queries["test1"]), "CT of the chest"
    ]  # fmt: skip
    assert [r["mode"] for r in results] == ["captions", "captions", "images"]
    assert all("refine" not in r for r in results)  # plain searches
    for r in results:
        assert [h["rank"] for h in r["hits"]] == [1, 2, 3]
        assert {"score", "image_id", "caption", "cuis", "extra"} <= set(r["hits"][0])
        assert r["hits"][0]["extra"]["modality"]


def test_search_exclude_self_in_images_mode(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, queries: dict[str, Path]
) -> None:
    own = queries["train0"].stem
    args = [
        "search",
        str(queries["train0"]),
        "--index",
        str(phantom_index_dir),
        "--json",
        "--mode",
        "images",
    ]
    _, stdout, _ = _run(capsys, *args)
    hits = json.loads(stdout)[0]["hits"]
    assert hits[0]["image_id"] == own and hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
    _, stdout, _ = _run(capsys, *args, "--exclude-self")
    hits = json.loads(stdout)[0]["hits"]
    assert own not in [h["image_id"] for h in hits] and len(hits) == 5


def test_search_a_folder_skips_non_images(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, queries: dict[str, Path]
) -> None:
    (queries["folder"] / "readme.png").write_text("a text file with an image name")
    try:
        code, stdout, err = _run(
            capsys,
            "search",
            str(queries["folder"]),
            "--index",
            str(phantom_index_dir),
            "--json",
            "--k",
            "2",
        )
    finally:
        (queries["folder"] / "readme.png").unlink()
    assert code == 0
    assert sorted(Path(r["query"]).name for r in json.loads(stdout)) == sorted(
        p.name for p in (queries["test0"], queries["test1"], queries["train0"])
    )
    assert "skipped" in err and "readme.png" in err


def test_search_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    phantom_index_dir: Path,
    queries: dict[str, Path],
    tmp_path: Path,
) -> None:
    code, _, err = _run(capsys, "search", str(queries["notes"]), "--index", str(phantom_index_dir))
    assert code == 1 and str(queries["notes"]) in _one_error_line(err)
    code, _, err = _run(capsys, "search", "--index", str(phantom_index_dir))
    assert code == 1 and "nothing to search" in _one_error_line(err)
    code, _, err = _run(capsys, "search", str(queries["test0"]), "--index", str(tmp_path / "none"))
    assert code == 1 and "does not exist" in _one_error_line(err)
    code, _, err = _run(
        capsys, "search", str(tmp_path / "missing.png"), "--index", str(phantom_index_dir)
    )
    assert code == 1 and "missing.png does not exist" in _one_error_line(err)
    code, _, err = _run(
        capsys,
        "search",
        str(queries["test0"]),
        "--index",
        str(phantom_index_dir),
        "--mode",
        "pixels",
    )
    assert code == 1 and "unknown --mode" in _one_error_line(err)


def test_search_k_beyond_index_is_clamped_with_a_note(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    phantom_index_dir: Path,
    queries: dict[str, Path],
) -> None:
    with caplog.at_level(logging.WARNING):
        code, stdout, _ = _run(
            capsys, "search", "--text", "MRI of the knee", "--index", str(phantom_index_dir),
            "--k", "500", "--json",
        )  # fmt: skip
    assert code == 0
    assert len(json.loads(stdout)[0]["hits"]) == 160
    assert "k=500 is larger than the index (160 cases)" in caplog.text


def test_sharded_build_and_merge(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    parts = []
    for i in range(2):
        out = tmp_path / f"part{i}"
        code, stdout, _ = _run(
            capsys, "index", "build", "--data", str(phantom_dir), "--model",
            str(trained_checkpoint), "--out", str(out), "--shard-size", "50", "--shard", f"{i}/2",
        )  # fmt: skip
        assert code == 0 and f"(part {i}/2;" in stdout
        parts.append(str(out))
    assert "part        1/2 of a sharded build" in _run(capsys, "index", "info", parts[1])[1]
    code, stdout, _ = _run(capsys, "index", "merge", *parts, "--out", str(tmp_path / "merged"))
    assert code == 0 and "merged 2 parts" in stdout and ": 160 cases" in stdout
    code, _, err = _run(capsys, "index", "merge", parts[0], "--out", str(tmp_path / "m2"))
    assert code == 1 and "parts 1/2 are missing" in _one_error_line(err)
    code, _, err = _run(
        capsys, "index", "build", "--data", str(phantom_dir), "--out", str(tmp_path / "x"),
        "--shard", "2/2",
    )  # fmt: skip
    assert code == 1 and "must be i/n" in _one_error_line(err)
