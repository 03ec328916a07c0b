"""`medcap search` refinements: --roi, --text with an image, --more-like/--less-like, ranges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from medcap.cli import main
from medcap.retrieval.retriever import Retriever


@pytest.fixture(scope="module")
def query_png(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    record = next(iter(phantom_dataset.records("test")))
    path = tmp_path_factory.mktemp("refine") / "query.png"
    path.write_bytes(record.image.data)
    return path


def _search(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["search", *argv, "--json"]) == 0, capsys.readouterr().err
    result: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return result


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["search", *argv]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _ids(entry: dict[str, Any]) -> list[str]:
    return [h["image_id"] for h in entry["hits"]]


def test_cli_refinements_match_the_library(
    capsys: pytest.CaptureFixture[str],
    phantom_index_dir: Path,
    phantom_retriever: Retriever,
    query_png: Path,
) -> None:
    base = [str(query_png), "--index", str(phantom_index_dir), "--k", "6", "--mode", "images"]
    plain = _search(capsys, *base)[0]
    assert "refine" not in plain
    width, height = Image.open(query_png).size
    box = (0, 0, width // 2, height // 2)
    [region] = _search(capsys, *base, "--roi", ",".join(map(str, box)), "--roi-weight", "0.7")
    assert region["refine"] == {"roi": list(box), "roi_weight": 0.7}
    lib = phantom_retriever.search(query_png, 6, mode="images", roi=box, roi_weight=0.7)[0]
    assert _ids(region) == [h.image_id for h in lib]

    [steered] = _search(capsys, *base, "--text", "MRI of the knee", "--text-weight", "0.5")
    lib = phantom_retriever.search(
        query_png, 6, mode="images", text="MRI of the knee", text_weight=0.5
    )
    assert _ids(steered) == [h.image_id for h in lib[0]] and steered["refine"]["text_weight"] == 0.5

    marked, other = plain["hits"][5]["image_id"], plain["hits"][0]["image_id"]
    [fed] = _search(capsys, *base, "--more-like", marked, "--less-like", other)
    assert _ids(fed).index(marked) < 5 and fed["refine"]["more_like"] == [marked]
    lib = phantom_retriever.search(
        query_png, 6, mode="images", more_like=[marked], less_like=[other]
    )
    assert _ids(fed) == [h.image_id for h in lib[0]]


def test_cli_number_ranges_filter_hits(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, query_png: Path
) -> None:
    base = [str(query_png), "--index", str(phantom_index_dir), "--k", "8"]
    [entry] = _search(capsys, *base, "--where", "size_cm=1..2.5")
    sizes = [h["extra"]["size_cm"] for h in entry["hits"]]
    assert sizes and all(1 <= s <= 2.5 for s in sizes)
    [entry] = _search(capsys, *base, "--where", "size_cm=3..")
    assert entry["hits"] and all(h["extra"]["size_cm"] >= 3 for h in entry["hits"])


def test_cli_refinement_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], phantom_index_dir: Path, query_png: Path
) -> None:
    index = ["--index", str(phantom_index_dir)]
    width, height = Image.open(query_png).size
    assert "x,y,w,h" in _error(capsys, str(query_png), *index, "--roi", "1,2,3")
    assert f"({width}x{height} pixels)" in _error(
        capsys, str(query_png), *index, "--roi", f"0,0,{width + 5},10"
    )
    assert "--roi refines image queries" in _error(
        capsys, *index, "--text", "CT", "--roi", "0,0,8,8"
    )
    assert "not in the index" in _error(capsys, str(query_png), *index, "--more-like", "nope")
    assert "one --text to steer" in _error(
        capsys, str(query_png), *index, "--text", "a", "--text", "b"
    )
    assert "not numbers" in _error(capsys, str(query_png), *index, "--where", "modality=1..2")
    assert "low end is above" in _error(capsys, str(query_png), *index, "--where", "size_cm=3..1")
