"""Item 11: duplicate image ids in a results file are refused, or averaged per image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.evaluation.caption_metrics import evaluate_caption_results
from tests.attack.helpers import one_error_line, run_cli

CFG = replace_set(DEFAULTS.eval, meteor=False)
REFERENCES = [
    "Axial CT of the chest showing a nodule in the right upper lobe.",
    "Coronal MRI of the brain with a lesion in the left temporal lobe.",
    "Chest X-ray showing an opacity at the right lung base.",
    "Ultrasound of the liver with a hypoechoic mass.",
    "Angiography of the left renal artery showing a stenosis.",
]
CANDIDATES = [
    "CT of the chest with a nodule in the right lobe.",
    "MRI of the brain showing a temporal lesion.",
    "X-ray of the chest with an opacity.",
    "Ultrasound of the liver showing a mass.",
    "Angiogram of the renal artery with stenosis.",
]


def _write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "original_caption", "generated_caption"])
        writer.writerows(rows)
    return path


def _unique_rows() -> list[tuple[str, str, str]]:
    return [(f"img{i}", REFERENCES[i], CANDIDATES[i]) for i in range(len(REFERENCES))]


def test_duplicates_are_an_error_naming_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = _unique_rows()
    results = _write(tmp_path / "results.csv", rows + [rows[1], rows[3], rows[3]])
    code, _, err = run_cli(capsys, "eval", "captions", results, "--no-meteor", "--no-bertscore")
    line = one_error_line(err)
    assert code == 1 and "2 image id(s)" in line and "img1, img3" in line
    assert "3 extra rows" in line and "--duplicates mean" in line


def test_mean_counts_every_image_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = _unique_rows()
    unique = evaluate_caption_results(_write(tmp_path / "u.csv", rows), CFG, bertscore=False)
    # Each image repeated a different number of times, with the same row each time: scored
    # once per image, the metrics must equal the file without repeats.
    repeated = [row for i, row in enumerate(rows) for _ in range(i + 1)]
    path = _write(tmp_path / "r.csv", repeated)
    with pytest.raises(InputError, match="more than one row"):
        evaluate_caption_results(path, CFG, bertscore=False)
    mean = evaluate_caption_results(path, replace_set(CFG, duplicates="mean"), bertscore=False)
    assert set(mean["metrics"]) == set(unique["metrics"])
    for name, value in unique["metrics"].items():
        assert mean["metrics"][name] == pytest.approx(value, rel=1e-9), name
    assert (mean["n"], mean["rows"]) == (5, 15)
    assert mean["duplicates"] == {
        "policy": "mean", "image_ids": 4, "extra_rows": 10,
        "ids": ["img1", "img2", "img3", "img4"],
    }  # fmt: skip
    assert unique["duplicates"]["image_ids"] == 0

    code, stdout, _ = run_cli(
        capsys, "eval", "captions", path, "--duplicates", "mean", "--no-bertscore", "--json"
    )
    assert code == 0 and json.loads(stdout)["duplicates"]["extra_rows"] == 10


def test_mean_averages_the_rows_of_an_image(tmp_path: Path) -> None:
    # Two different candidates for img0: its ROUGE-L is the mean of the two rows' scores,
    # and img0 weighs as much as img1 in the corpus mean.
    rows = [
        ("img0", REFERENCES[0], CANDIDATES[0]),
        ("img0", REFERENCES[0], "Something else entirely."),
        ("img1", REFERENCES[1], CANDIDATES[1]),
    ]
    report = evaluate_caption_results(
        _write(tmp_path / "r.csv", rows), replace_set(CFG, duplicates="mean"), bertscore=False
    )
    per_row = report["per_item"]["ROUGE-L"]
    assert report["metrics"]["ROUGE-L"] == pytest.approx(
        ((per_row[0] + per_row[1]) / 2 + per_row[2]) / 2
    )
    assert "METEOR" not in report["metrics"]


def test_the_cli_states_the_duplicates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    results = _write(tmp_path / "results.csv", _unique_rows())
    code, stdout, _ = run_cli(capsys, "eval", "captions", results, "--no-meteor", "--no-bertscore")
    assert code == 0 and "duplicates: none" in stdout
