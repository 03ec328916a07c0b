"""BERTScore with a local model that mirrors microsoft/deberta-xlarge-mnli (config fields and
file names as published, shrunk): by path, or by its hub id from a bundle, with every socket
refused; an incomplete or damaged folder is one `error:` line before any metric runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.errors import InputError
from medcap.evaluation.bertscore import bertscore_f1, bertscore_unavailable_reason
from medcap.snapshots.bundle import BUNDLE_ENV
from tests.support.mirror_bundle import write_bundle
from tests.support.mirror_repos import BERTSCORE_ID

pytest.importorskip("bert_score")

ROWS = [
    (
        "case-1",
        "Axial CT of the chest showing a nodule.",
        "Axial CT of the chest showing a nodule.",
    ),
    ("case-2", "MRI of the brain with a lesion.", "Ultrasound of the abdomen."),
]


def _results(path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "original_caption", "generated_caption"])
        writer.writerows(ROWS)
    return path


def test_a_local_mirror_scores_by_path(bertscore_repo: Path, no_network: list[str]) -> None:
    assert bertscore_unavailable_reason(str(bertscore_repo)) is None
    candidates, references = [r[2] for r in ROWS], [[r[1]] for r in ROWS]
    # bert_score's layer for deberta-xlarge-mnli, found by the folder's name, is 40: deeper
    # than the shrunk mirror, which is refused in one line
    with pytest.raises(InputError) as err:
        bertscore_f1(candidates, references, model=str(bertscore_repo), device="cpu")
    assert str(err.value).startswith(f"BERTScore layer 40 does not exist in {bertscore_repo} (2")
    mean, scores = bertscore_f1(
        candidates, references, model=str(bertscore_repo), num_layers=2, device="cpu"
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1] < 0.999
    assert mean == pytest.approx(sum(scores) / 2)


def test_empty_captions_score_zero(bertscore_repo: Path) -> None:
    candidates = [ROWS[0][2], "", ROWS[1][2]]
    references = [[ROWS[0][1]], [ROWS[1][1]], ["", " "]]
    mean, scores = bertscore_f1(
        candidates, references, model=str(bertscore_repo), num_layers=2, device="cpu"
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1:] == [0.0, 0.0]
    assert mean == pytest.approx(scores[0] / 3)


def test_the_layer_is_found_by_hub_id_or_folder_name(tmp_path: Path) -> None:
    from medcap.evaluation.bertscore import default_num_layers

    for name in ("deberta-xlarge-mnli", "microsoft--deberta-xlarge-mnli"):
        assert default_num_layers(str(tmp_path / name), tmp_path / name) == 40
    assert default_num_layers(BERTSCORE_ID, tmp_path / "snapshots" / "abc123") == 40
    assert default_num_layers(str(tmp_path / "my-model"), tmp_path / "my-model") is None


def test_the_default_model_id_scores_from_a_bundle(
    bertscore_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_network: list[str],
) -> None:
    bundle = write_bundle(
        tmp_path / "bundle", [("model", BERTSCORE_ID, "bertscore", bertscore_repo)]
    )
    results = _results(tmp_path / "results.csv")
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    argv = ["--set", "eval.bertscore_num_layers=2", "eval", "captions", str(results)]
    assert main([*argv, "--json", "--no-meteor"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "BERTScore-F1" not in report["unavailable"]
    assert 0.0 < report["metrics"]["BERTScore-F1"] < 1.0


def _damage(folder: Path, kind: str) -> str:
    if kind == "no-merges":
        (folder / "merges.txt").unlink()
        return f"error: {folder / 'merges.txt'} is missing: the BERTScore model tokenizer"
    if kind == "truncated-weights":
        data = (folder / "pytorch_model.bin").read_bytes()
        (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
        return f"error: {folder / 'pytorch_model.bin'}: truncated or damaged"
    assert kind == "unknown-architecture"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "deberta-x9"}))
    return f"error: {folder / 'config.json'} names an architecture this transformers"


@pytest.mark.parametrize("kind", ["no-merges", "truncated-weights", "unknown-architecture"])
def test_a_damaged_local_model_is_one_error_line(
    bertscore_repo: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(shutil.copytree(bertscore_repo, tmp_path / "deberta-xlarge-mnli"))
    expected = _damage(folder, kind)
    results = _results(tmp_path / "results.csv")
    argv = ["eval", "captions", str(results), "--no-meteor", "--out", str(tmp_path / "report")]
    code = main([*argv, "--bertscore-model", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(expected) and err.count("\n") == 1
    assert not (tmp_path / "report").exists()
