"""Shared CLI options: closed choices checked while parsing; metadata filters on search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap.cli import main


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "q.png", "--index", "x", "--mode", "pixels"], "unknown --mode 'pixels'"),
        (["index", "build", "--data", "d", "--out", "o", "--index-type", "lsh"], "--index-type"),
        (["train", "--out", "o", "--precision", "fp64"], "unknown --precision 'fp64'"),
        (["caption", "q.png", "--index", "x", "--dtype", "fp8"], "unknown --dtype 'fp8'"),
        (["caption", "q.png", "--index", "x", "--backend", "gpt"], "unknown caption backend"),
    ],
)
def test_bad_choices_stop_before_anything_runs(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1  # nothing exists at these paths: only the parser has run
    assert message in _error_line(capsys.readouterr().err)


def test_search_where_keeps_matching_cases(
    phantom_index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "--index", str(phantom_index_dir), "--text", "chest", "--json", "--k", "6"]
    assert main([*argv, "--where", "modality=CT,MRI", "--where", "split=train"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits and {h["extra"]["modality"] for h in hits} <= {"CT", "MRI"}
    assert main([*argv, "--where", "organ=lung"]) == 1
    assert "unknown filter column 'organ'" in _error_line(capsys.readouterr().err)
    assert main([*argv, "--where", "modality"]) == 1
    assert "write it as column=value" in _error_line(capsys.readouterr().err)
