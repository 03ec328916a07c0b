"""Caption metrics on hand-worked cases, results files, ImageCLEF mode and missing metrics."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.evaluation import meteor
from medcap.evaluation.caption_metrics import (
    compute_caption_metrics,
    evaluate_caption_results,
    load_caption_results,
    rouge1_f1,
)
from medcap.evaluation.coco_metrics import bleu, cider_d, rouge_l
from medcap.evaluation.tokenize import imageclef_preprocess, ptb_tokenize

NO_METEOR = DEFAULTS.eval.__class__(meteor=False)


def test_bleu_hand_worked() -> None:
    # 1-grams 5/6, 2-grams 3/5 ("the cat", "on the", "the mat"), 3-grams 1/4, 4-grams 0/3
    corpus, _ = bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert corpus[0] == pytest.approx(5 / 6)
    assert corpus[1] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert corpus[2] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    assert corpus[3] < 1e-3  # no 4-gram match: only the 1e-15 smoothing remains


def test_bleu_brevity_penalty_uses_the_closest_reference() -> None:
    # candidate of 2 words; references of 6 and 3 words -> the 3-word one is closest
    corpus, _ = bleu(["the cat"], [["the cat is on the mat", "the cat sat"]])
    assert corpus[0] == pytest.approx(math.exp(1 - 3 / 2))
    # on a tie in distance the shorter reference wins: lengths 1 and 3 around 2
    corpus, _ = bleu(["the cat"], [["cat", "the cat sat"]])
    assert corpus[0] == pytest.approx(1.0)


def test_bleu_is_corpus_level_not_an_average() -> None:
    cands = ["a b c d", "x"]
    refs = [["a b c d"], ["y"]]
    corpus, per_item = bleu(cands, refs)
    assert corpus[0] == pytest.approx(4 / 5)  # (4 + 0) matches over (4 + 1) words
    assert per_item[0][0] == pytest.approx(1.0)
    assert per_item[0][1] == pytest.approx(0.0, abs=1e-6)


def test_rouge_l_hand_worked() -> None:
    # LCS("a b c d", "a c d e f") = "a c d": P = 3/4, R = 3/5, beta = 1.2
    p, r, b2 = 3 / 4, 3 / 5, 1.2**2
    score, _ = rouge_l(["a b c d"], [["a c d e f"]])
    assert score == pytest.approx((1 + b2) * p * r / (r + b2 * p))
    assert rouge_l(["x y"], [["a b"]])[0] == 0.0


def test_cider_d_hand_worked() -> None:
    # Two items, idf = ln 2 - ln 1 for every n-gram; item 1 matches on 1- and 2-grams
    # (cosine 1 each, no 3-/4-grams) -> mean over n = 0.5 -> x10 = 5; item 2 shares nothing.
    score, per_item = cider_d(["a b", "c d"], [["a b"], ["e f"]])
    assert per_item == pytest.approx([5.0, 0.0])
    assert score == pytest.approx(2.5)


def test_identical_captions_score_perfectly() -> None:
    captions = ["Axial CT of the chest showing a 2 cm nodule (arrow).", "Normal chest X-ray."]
    other = ["Coronal MRI of the knee.", "Ultrasound of the liver with a cyst."]
    scores = compute_caption_metrics(captions + other, captions + other, use_meteor=False).metrics
    assert scores["BLEU-1"] == pytest.approx(1.0)
    assert scores["BLEU-4"] == pytest.approx(1.0)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["CIDEr"] > 5.0


def test_imageclef_preprocessing_and_rouge1() -> None:
    assert imageclef_preprocess("CT at 2.5 cm, (arrow)!") == "ct at numbernumber cm arrow"
    assert imageclef_preprocess("T2-weighted  MRI") == "tnumberweighted mri"
    # overlap 2; P = 2/3, R = 2/4 -> F1 = 4/7
    assert rouge1_f1("a b c", "a b d e") == pytest.approx(4 / 7)
    assert rouge1_f1("", "a") == 0.0
    plain = compute_caption_metrics(["CT, 2 cm."], ["ct 3 cm"], use_meteor=False)
    clef = compute_caption_metrics(["CT, 2 cm."], ["ct 3 cm"], imageclef=True, use_meteor=False)
    assert "ROUGE-1" not in plain.metrics
    assert clef.metrics["ROUGE-1"] == pytest.approx(1.0)  # both become "ct number cm"
    assert clef.metrics["BLEU-1"] > plain.metrics["BLEU-1"]


def test_tokeniser_key_behaviours() -> None:
    text = "Axial CT (arrow) shows a 2.5cm nodule, e.g. Fig. 2; it doesn't enhance."
    assert ptb_tokenize(text) == (
        "axial ct -lrb- arrow -rrb- shows a 2.5 cm nodule e.g. fig. 2 it does n't enhance"
    )


def test_meteor_is_reported_unavailable_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    result = compute_caption_metrics(["a chest ct"], ["a chest ct"])
    assert "METEOR" not in result.metrics
    assert "Java" in result.unavailable["METEOR"]


def _write_csv(path, rows, header=("image_id", "original_caption", "generated_caption", "backend")):
    lines = [",".join(header)] + [",".join(f'"{v}"' for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_results_csv_and_parquet_are_read_alike(tmp_path) -> None:
    rows = [
        ("c1", "Axial CT of the chest, nodule.", "CT of the chest showing a nodule.", "consensus"),
        ("c2", "", "anything", "consensus"),  # no reference: skipped and listed
        ("c3", "MRI of the knee.", "", "consensus"),  # empty candidate is scored, not dropped
    ]
    csv_path = tmp_path / "results.csv"
    _write_csv(csv_path, rows)
    columns = ["image_id", "original_caption", "generated_caption", "backend"]
    table = pa.table({k: [r[i] for r in rows] for i, k in enumerate(columns)})
    pq.write_table(table, tmp_path / "results.parquet")
    a = load_caption_results(csv_path)
    b = load_caption_results(tmp_path / "results.parquet")
    assert a.image_ids == b.image_ids == ["c1", "c3"]
    assert a.candidates == ["CT of the chest showing a nodule.", ""]
    assert [s.image_id for s in a.skipped] == ["c2"] and a.skipped[0].row == 1
    report = evaluate_caption_results(csv_path, NO_METEOR, bertscore=False)
    assert report["n"] == 2
    expected = compute_caption_metrics(a.references, a.candidates, use_meteor=False).metrics
    assert report["metrics"] == expected
    assert "METEOR" in report["unavailable"] and "CLIPScore" in report["unavailable"]
    assert len(report["per_item"]["CIDEr"]) == 2


def test_missing_columns_are_named_in_one_line(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    _write_csv(path, [("c1", "x")], header=("image_id", "caption"))
    with pytest.raises(InputError) as info:
        load_caption_results(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "original_caption" in message and "generated_caption" in message


def test_a_results_file_without_references_is_an_error(tmp_path) -> None:
    path = tmp_path / "results.csv"
    _write_csv(path, [("c1", "", "a caption", "x")])
    with pytest.raises(InputError, match="no row has an original_caption"):
        evaluate_caption_results(path, NO_METEOR, bertscore=False)


def test_clipscore_without_any_found_image_is_unavailable_not_zero(tmp_path) -> None:
    path = tmp_path / "results.csv"
    _write_csv(path, [("c1", "CT of the chest.", "CT of the chest.", "x")])
    report = evaluate_caption_results(
        path, NO_METEOR, bertscore=False, clip_encoder=object(), images={}
    )
    assert "CLIPScore" not in report["metrics"]
    assert "no image" in report["unavailable"]["CLIPScore"]
