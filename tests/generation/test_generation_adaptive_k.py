"""Adaptive k: neighbours kept until the similarity drops sharply, within min..max; the
caption records the k it used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, replace_set
from medcap.data.images import load_image
from medcap.generation.adaptive_k import choose_k

CFG = replace_set(DEFAULTS.generation, auto_k_min=2, auto_k_max=8, auto_k_gap_ratio=2.0)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.9, 0.89, 0.88, 0.6, 0.59, 0.58, 0.57, 0.56], 3),  # cut at the sharp drop
        ([0.9, 0.6, 0.59, 0.58, 0.57, 0.56, 0.55, 0.54], 8),  # drop before min, even after
        ([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55], 8),  # even decline: no sharp drop
        ([0.7] * 8, 8),  # ties: keep all
        ([0.9, 0.88, 0.87, 0.86, 0.85, 0.84, 0.83, 0.82, 0.2, 0.1], 8),  # beyond max: max
        ([0.9], 1),  # fewer found than min
    ],
)
def test_choose_k_cuts_at_the_largest_sharp_drop(scores: list[float], expected: int) -> None:
    assert choose_k(scores, CFG) == expected


def test_choose_k_honours_the_ratio() -> None:
    scores = [0.9, 0.88, 0.86, 0.8, 0.78, 0.76]  # largest drop 0.06, mean drop 0.028
    assert choose_k(scores, replace_set(CFG, auto_k_gap_ratio=2.0)) == 3
    assert choose_k(scores, replace_set(CFG, auto_k_gap_ratio=2.5)) == 6


def test_caption_k_auto_records_the_k_it_used(
    phantom_dataset: Any,
    phantom_index_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medcap.retrieval.retriever import open_retriever

    records = list(phantom_dataset.records("test"))[:4]
    paths = []
    for i, record in enumerate(records):
        paths.append(tmp_path / f"q{i}.png")
        load_image(record.image).save(paths[-1])
    argv = ["caption", *map(str, paths), "--index", str(phantom_index_dir), "--json"]
    assert main([*argv, "--k", "auto"]) == 0
    results = json.loads(capsys.readouterr().out)
    retriever = open_retriever(phantom_index_dir, device="cpu")
    cfg = DEFAULTS.generation
    for path, result in zip(paths, results, strict=True):
        hits = retriever.search_images([load_image(path)], cfg.auto_k_max, mode=cfg.search_mode)
        expected = choose_k([h.score for h in hits[0]], cfg)
        assert result["k"] == expected == len(result["neighbours"])
        assert cfg.auto_k_min <= result["k"] <= cfg.auto_k_max
    assert main([*argv, "--k", "3"]) == 0
    assert {r["k"] for r in json.loads(capsys.readouterr().out)} == {3}
    assert main([*argv, "--k", "many"]) == 1
    assert "--k takes a number of neighbours or auto" in capsys.readouterr().err
