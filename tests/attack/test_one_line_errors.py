"""One-line errors instead of catch-alls, and `caption`'s summary printed once to stdout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.attack.helpers import one_error_line, run_cli


def test_caption_limit_below_one(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, attack_index: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys, "caption", "--index", attack_index, "--data", phantom_dir,
        "--out", tmp_path / "c.csv", "--limit", "-1",
    )  # fmt: skip
    assert code == 1 and "--limit must be at least 1" in one_error_line(err)


@pytest.mark.parametrize("lr", ["nan", "-1", "0", "inf"])
def test_train_lr_must_be_a_positive_number(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, tmp_path: Path, lr: str
) -> None:
    code, _, err = run_cli(
        capsys, "train", "--data", phantom_dir, "--out", tmp_path / "run", "--lr", lr
    )
    assert code == 1 and "train.lr must be a positive number" in one_error_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "index.batch_size must be >= 1"),
        ("--shard-size", "0", "index.shard_size must be >= 1"),
        ("--thumbnail-size", "-1", "index.thumbnail_size must be >= 0"),
    ],
)
def test_index_build_sizes(
    capsys: pytest.CaptureFixture[str],
    phantom_dir: Path,
    tmp_path: Path,
    option: str,
    value: str,
    message: str,
) -> None:
    code, _, err = run_cli(
        capsys, "index", "build", "--data", phantom_dir, "--out", tmp_path / "idx", option, value
    )
    assert code == 1 and message in one_error_line(err)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_index_build_out_is_an_existing_file(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, tmp_path: Path, overwrite: list[str]
) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("keep me\n")
    code, _, err = run_cli(
        capsys, "index", "build", "--data", phantom_dir, "--out", out, "--split", "test",
        *overwrite,
    )  # fmt: skip
    assert code == 1 and "is a file, not an index directory" in one_error_line(err)
    assert out.read_text() == "keep me\n"


def test_caption_huge_k_is_clamped_and_the_summary_printed_once(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    phantom_dir: Path,
    attack_index: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "c.csv"
    with caplog.at_level(logging.INFO, logger="medcap"):
        code, stdout, stderr = run_cli(
            capsys, "caption", "--index", attack_index, "--data", phantom_dir, "--split",
            "test", "--out", out, "--limit", "2", "--k", "1000000000",
        )  # fmt: skip
    assert code == 0, stderr
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert notes == ["note: k=1000000000 is larger than the index (40 cases); using 40"]
    summary = f"{out}: 2 captions written, 0 already there"
    assert stdout.count("captions written") == 1 and summary in stdout
    assert "written" not in stderr
