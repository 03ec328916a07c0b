"""`medcap eval retrieval|captions|concepts` and `medcap report` on phantoms: numbers,
rendered PNGs and markdown links."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, replace_set
from medcap.errors import CorruptArtifactError, InputError
from medcap.evaluation.report import load_report, render_report, write_report

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _assert_links_resolve(report_md: Path) -> list[str]:
    text = report_md.read_text(encoding="utf-8")
    links = [link for link in _LINK.findall(text) if "://" not in link]
    assert links, "the report links no file"
    missing = [link for link in links if not (report_md.parent / link).exists()]
    assert missing == []
    return links


@pytest.fixture(scope="module")
def retrieval_run(
    phantom_dir: Path, trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`medcap eval retrieval` on the phantom test split: random medcap-tiny vs trained."""
    out = tmp_path_factory.mktemp("eval") / "retrieval"
    code = main(
        [
            "eval",
            "retrieval",
            "--data",
            str(phantom_dir),
            "--split",
            "test",
            "--model",
            "medcap-tiny",
            "--model",
            str(trained_checkpoint),
            "--group-by",
            "modality",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_trained_encoder_beats_random_init_on_phantoms(
    retrieval_run: Path, phantom_dataset: Any
) -> None:
    report = json.loads((retrieval_run / "report.json").read_text())
    random_init, trained = report["encoders"]
    assert random_init["spec"] == "medcap-tiny"
    assert report["gallery_size"] == report["dataset"]["split_size"] == 20
    for direction in ("image_to_text", "text_to_image"):
        assert trained[direction]["R@5"] > random_init[direction]["R@5"]
        assert trained[direction]["R@10"] >= random_init[direction]["R@10"]
        assert trained[direction]["median_rank"] < random_init[direction]["median_rank"]
        assert trained[direction]["mean_rank"] < random_init[direction]["mean_rank"]
    attrs = trained["attributes"]["image_to_text"]
    assert attrs["modality"] > trained["attributes"]["chance"]["modality"]
    assert trained["fingerprint"] != random_init["fingerprint"]
    assert report["dataset"]["fingerprint"] and report["timings"]["total_s"] > 0
    modalities = [r.extra["modality"] for r in phantom_dataset.records("test")]
    assert {v: g["n"] for v, g in trained["groups"]["values"].items()} == {
        m: modalities.count(m) for m in set(modalities)
    }


def test_retrieval_report_renders_pngs_and_links(retrieval_run: Path, tmp_path: Path) -> None:
    links = _assert_links_resolve(retrieval_run / "report.md")
    for name in (
        "recall_at_k.png",
        "rank_histogram.png",
        "groups.png",
        "attributes.png",
        "examples_1.png",
        "examples_2.png",
    ):
        assert name in links
        assert (retrieval_run / name).stat().st_size > 5_000
    text = (retrieval_run / "report.md").read_text()
    assert "Gallery: 20 pairs" in text and "pessimistic" in text
    report = load_report(retrieval_run)
    assert all(report["thumbnails"][ex["image_id"]] for ex in report["examples"])
    # re-rendered elsewhere (as the app does), the example grids still find the thumbnails
    elsewhere = tmp_path / "rerendered"
    elsewhere.mkdir()
    render_report(report, elsewhere)
    assert "thumbs" not in {p.name for p in elsewhere.iterdir()}
    size_here = (retrieval_run / "examples_1.png").stat().st_size
    assert (elsewhere / "examples_1.png").stat().st_size == pytest.approx(size_here, rel=0.05)


def test_compare_reports_side_by_side_with_benchmarks(retrieval_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    report = load_report(retrieval_run)
    report["encoders"] = report["encoders"][1:]
    write_report(report, other)
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "speed": {
                    "rows": [{"batch": 8, "img_per_s": 120.5}, {"batch": 32, "img_per_s": 410.0}]
                }
            }
        )
    )
    out = tmp_path / "combined"
    assert (
        main(["report", str(retrieval_run), str(other), "--bench", str(bench), "--out", str(out)])
        == 0
    )
    _assert_links_resolve(out / "report.md")
    text = (out / "report.md").read_text()
    assert "retrieval: medcap-tiny" in text and "other: " in text
    assert "410.000" in text and "img_per_s" in text


def test_report_needs_inputs_and_bad_flags_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 1
    assert "nothing to compare" in capsys.readouterr().err
    argv = ["eval", "retrieval", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main([*argv, "--rank-ties", "random"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --rank-ties") and "\n" not in err


def test_load_report_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_report(tmp_path / "nowhere")
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        load_report(tmp_path)


def test_eval_retrieval_sampled_protocol_with_same_caption_relevance(
    phantom_dir: Path, trained_encoder: Any, tmp_path: Path
) -> None:
    from medcap.runs.evaluate import run_retrieval_evaluation

    cfg = replace_set(
        DEFAULTS.retrieval, sample_pairs=12, sample_seed=1, same_caption_relevant=True
    )
    eval_cfg = replace_set(DEFAULTS.eval, example_queries=2)
    path = run_retrieval_evaluation(
        phantom_dir, [trained_encoder], tmp_path, split="valid", cfg=cfg, eval_cfg=eval_cfg
    )
    report = load_report(path)
    assert report["dataset"]["sampled"] and report["gallery_size"] == 12
    assert report["config"]["retrieval"]["same_caption_relevant"] is True
    assert "12 pairs sampled from the 20" in (tmp_path / "report.md").read_text()
    again = run_retrieval_evaluation(
        phantom_dir,
        [trained_encoder],
        tmp_path / "again",
        split="valid",
        cfg=cfg,
        eval_cfg=eval_cfg,
    )
    assert load_report(again)["encoders"][0]["image_ids"] == report["encoders"][0]["image_ids"]


def test_eval_concepts_by_retrieval(
    phantom_dir: Path, phantom_index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "concepts"
    argv = ["eval", "concepts", "--index", str(phantom_index_dir), "--data", str(phantom_dir)]
    argv += ["--k", "5", "--threshold", "0.5", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    assert "concept F1" in capsys.readouterr().out
    report = load_report(out)
    assert report["n"] == 20 and report["config"]["k_used"] == 5
    assert 0.0 <= report["f1"] <= 1.0
    assert report["f1"] == pytest.approx(sum(q["f1"] for q in report["per_query"]) / 20)
    assert report["f1"] == pytest.approx(report["threshold_sweep"]["f1"][9])  # threshold 0.5
    assert all(q["image_id"].startswith("phantom_test") for q in report["per_query"])
    _assert_links_resolve(out / "report.md")


def test_eval_captions_with_clipscore(
    phantom_dataset: Any, phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = list(phantom_dataset.records("test"))[:4]
    rows = ["image_id,original_caption,generated_caption"]
    rows += [f'{r.image_id},"{r.caption}","{records[0].caption}"' for r in records]
    rows.append('missing-case,"A caption.","A caption."')
    results = tmp_path / "results.csv"
    results.write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["eval", "captions", str(results), "--json", "--no-meteor", "--no-bertscore"]
    argv += ["--model", "medcap-tiny", "--data", str(phantom_dir), "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads(printed[: printed.rindex("}") + 1])
    assert data["clipscore"]["items"] == 4 and data["clipscore"]["encoder"] == "medcap-tiny"
    assert 0.0 <= data["metrics"]["CLIPScore"] <= 2.5
    assert 0.0 <= data["metrics"]["RefCLIPScore"] <= 2.5
    assert "CLIPScore" not in data["unavailable"]


def test_eval_captions_cli_json_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.csv"
    results.write_text(
        "image_id,original_caption,generated_caption,backend\n"
        'a,"Axial CT of the chest showing a nodule.","CT of the chest with a nodule.",consensus\n'
        'b,"MRI of the knee (arrow).","MRI of the knee.",consensus\n',
        encoding="utf-8",
    )
    out = tmp_path / "report"
    code = main(
        [
            "eval",
            "captions",
            str(results),
            "--json",
            "--no-meteor",
            "--no-bertscore",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    data = json.loads(printed[: printed.rindex("}") + 1])
    assert data["n"] == 2 and set(data["metrics"]) == {
        "BLEU-1",
        "BLEU-2",
        "BLEU-3",
        "BLEU-4",
        "ROUGE-L",
        "CIDEr",
    }
    assert "METEOR" in data["unavailable"]
    text = (out / "report.md").read_text()
    assert "unavailable" in text and "CIDEr" in text
    _assert_links_resolve(out / "report.md")


def test_eval_captions_missing_column_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.csv"
    results.write_text("image_id,caption\na,x\n", encoding="utf-8")
    assert main(["eval", "captions", str(results), "--no-meteor", "--no-bertscore"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "original_caption" in err and str(results) in err
