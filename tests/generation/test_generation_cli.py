"""`medcap caption` (single images and batch mode) and `medcap train generator` through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from medcap.cli import main
from medcap.data.images import load_image


@pytest.fixture(scope="module")
def query_png(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    record = next(iter(phantom_dataset.records("test")))
    path = tmp_path_factory.mktemp("queries") / "query.png"
    load_image(record.image).convert("L").save(path)  # grayscale on disk
    return path


def test_single_image_prints_caption_and_neighbours(
    query_png: Path, phantom_index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["caption", str(query_png), "--index", str(phantom_index_dir), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(query_png))
    assert "caption: " in out and "neighbours:" in out
    assert [line.strip()[:2] for line in out.splitlines() if line.startswith("    ")] == [
        "1.",
        "2.",
        "3.",
    ]


def test_json_output_and_dicom_input(
    query_png: Path, phantom_index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydicom.data import get_testdata_file

    dicom = get_testdata_file("CT_small.dcm")
    code = main(["caption", str(query_png), dicom, "--index", str(phantom_index_dir), "--json"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(query_png), dicom]
    for result in results:
        assert len(result["neighbours"]) == 5
        assert result["caption"] in [n["caption"] for n in result["neighbours"]]
        assert [n["rank"] for n in result["neighbours"]] == [1, 2, 3, 4, 5]
        assert result["backend"] == "consensus"


def test_batch_mode_writes_and_resumes(
    phantom_dir: Path, phantom_index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.csv"
    base = ["caption", "--index", str(phantom_index_dir), "--data", str(phantom_dir)]
    base += ["--split", "test", "--out", str(out)]
    assert main([*base, "--limit", "7"]) == 0
    assert "7 captions written, 0 already there" in capsys.readouterr().out
    assert main([*base, "--limit", "10", "--checkpoint-every", "2"]) == 0
    assert "3 captions written, 7 already there" in capsys.readouterr().out
    with out.open(newline="") as handle:
        ids = [row["image_id"] for row in csv.DictReader(handle)]
    assert len(ids) == len(set(ids)) == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to caption"),
        (["--data", "x"], "batch mode needs --out"),
        (["q.png", "--backend", "gpt"], "unknown caption backend 'gpt'"),
        (["q.png", "--model", "some/model"], "consensus backend uses no model"),
        (["q.png", "--template", "nope"], "unknown prompt template 'nope'"),
        (["missing.png"], "none of the given images could be read"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    extra: list[str],
    message: str,
    phantom_index_dir: Path,
    query_png: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(query_png) if a == "q.png" else a for a in extra]
    assert main(["caption", "--index", str(phantom_index_dir), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_train_generator_then_caption_with_the_adapter(
    phantom_dir: Path,
    phantom_index_dir: Path,
    query_png: Path,
    tiny_blip2: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medcap.cli.train_generator import generator

    model, processor = tiny_blip2()
    base = tmp_path / "tiny-blip2"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    app = typer.Typer()
    app.command()(generator)
    adapter = tmp_path / "adapter"
    args = ["--data", str(phantom_dir), "--index", str(phantom_index_dir), "--out", str(adapter)]
    args += ["--model", str(base), "--max-steps", "3", "--limit", "12", "--batch-size", "4"]
    args += ["--device", "cpu", "--template", "smallcap", "--k", "3"]
    bad = CliRunner().invoke(app, [*args, "--lora-targets", "no_such_proj"])
    assert bad.exit_code != 0 and "--lora-targets" in str(bad.exception)
    result = CliRunner().invoke(app, [*args, "--lora-targets", "q_proj, v_proj", "--lora-r", "4"])
    assert result.exit_code == 0, result.output
    assert "adapter after 3 steps" in result.output
    peft_config = json.loads((adapter / "adapter_config.json").read_text())
    assert set(peft_config["target_modules"]) == {"q_proj", "v_proj"} and peft_config["r"] == 4
    info = json.loads((adapter / "medcap_adapter.json").read_text())
    assert info["base_model"] == str(base) and info["template"] == "smallcap" and info["k"] == 3
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "loss.png").exists()

    # The adapter names its base model, template and k: captioning needs only --adapter.
    code = main(
        [
            "caption",
            str(query_png),
            "--index",
            str(phantom_index_dir),
            "--backend",
            "blip2-lora",
            "--adapter",
            str(adapter),
            "--max-new-tokens",
            "4",
            "--json",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["backend"] == "blip2-lora" and entry["model"] == f"{base}+adapter"
    assert len(entry["neighbours"]) == 3 and entry["caption"]
