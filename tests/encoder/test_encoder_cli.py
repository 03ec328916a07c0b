"""`medcap train` through the CLI: a short run, resume with more epochs, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap.cli import main

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


def test_offline_hub_model_is_one_line_error(
    phantom_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    out = tmp_path / "run"
    code = main(["train", "--data", str(phantom_dir), "--out", str(out), "--model", BIOMEDCLIP])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith(f"error: cannot fetch encoder '{BIOMEDCLIP}'")
    assert "local checkpoint" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (out / "last.pt").exists()


def test_missing_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: missing --data: the dataset to train on (see `medcap data --help`)"
    )
    assert main(["train", "--data", str(tmp_path)]) == 1
    assert "missing --out" in capsys.readouterr().err


def test_train_then_resume_with_more_epochs(
    phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = ["train", "--data", str(phantom_dir), "--out", str(out), "--epochs", "1",
             "--batch-size", "40", "--device", "cpu", "--checkpoint-every-steps", "3",
             "--num-threads", "1"]  # fmt: skip
    assert main(first) == 0
    printed = capsys.readouterr().out
    assert "trained 4 steps, 1 epochs" in printed and "image->text R@1" in printed
    assert main(first) == 1  # the run exists: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert "trained 8 steps, 2 epochs" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 40
    assert config["train"]["num_threads"] == 1  # kept from the first run
    assert config["data"] == str(phantom_dir)
