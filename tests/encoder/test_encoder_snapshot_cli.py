"""Snapshots wherever a model spec is taken: rank, index build, search --model, eval
retrieval, CLIPScore and train, through the command line; and the three reported defects
(a snapshot folder or its weights file refused, `NAME:{path}` printed with braces, a log line
glued to the error) fixed."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from medcap.cli import main
from medcap.encoder import load_encoder
from medcap.snapshots.bundle import BUNDLE_ENV
from tests.support.mirror_repos import write_clip_snapshot

SRC = Path(__file__).resolve().parents[2] / "src"
WEIGHTS = "open_clip_pytorch_model.bin"
CAPTIONS = ["Axial CT of the chest showing a nodule.", "MRI of the brain.", "Knee radiograph."]


def _medcap(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command as a user runs it, every byte of stderr captured."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop(BUNDLE_ENV, None)
    command = [sys.executable, "-m", "medcap", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "scan.png"
    Image.new("RGB", (120, 96), (80, 90, 100)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A medcap-tiny snapshot folder (fast enough for whole-dataset commands)."""
    model = load_encoder("medcap-tiny").model
    with torch.no_grad():
        model.text_projection.mul_(1.5)  # not the spec's seeded weights
    return write_clip_snapshot(tmp_path_factory.mktemp("snap") / "tiny", model, "medcap-tiny")


@pytest.mark.slow
def test_rank_takes_a_biomedclip_folder_or_its_weights_file_and_prints_no_warning(
    biomedclip_snapshot: Path, scan: Path
) -> None:
    args = ["--caption", CAPTIONS[0], "--caption", CAPTIONS[1], "--json"]
    done = _medcap("rank", str(scan), "--model", str(biomedclip_snapshot / WEIGHTS), *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no library warning on the way
    ranked = json.loads(done.stdout)["captions"]
    expected = load_encoder(str(biomedclip_snapshot))
    scores = expected.encode_texts(CAPTIONS[:2]) @ expected.encode_images([Image.open(scan)])[0]
    assert sorted(r["score"] for r in ranked) == pytest.approx(sorted(scores.tolist()), abs=1e-5)


@pytest.mark.slow
def test_a_bare_weights_file_says_how_to_load_it_in_one_line(tmp_path: Path, scan: Path) -> None:
    weights = tmp_path / "downloads" / WEIGHTS
    weights.parent.mkdir()
    torch.save(load_encoder("medcap-tiny").model.state_dict(), weights)
    done = _medcap("rank", str(scan), "--caption", "x", "--model", str(weights))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"error: checkpoint {weights} has no sidecar open_clip_pytorch_model.json and no "
        "open_clip_config.json beside it; pass a checkpoint written by `medcap train`, an "
        f"open_clip snapshot folder, or NAME:{weights} to load open_clip weights into "
        "architecture NAME\n"
    )


def test_a_folder_that_is_neither_kind_is_one_line(
    tmp_path: Path, scan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rank", str(scan), "--caption", "x", "--model", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path} is neither an open_clip snapshot (no open_clip_config.json) nor a "
        "`medcap train` output (no best.pt); pass one of those folders or a checkpoint file\n"
    )


@pytest.mark.slow
def test_index_search_and_eval_take_a_snapshot_folder(
    tiny_snapshot: Path, phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "index"
    build = ["index", "build", "--data", str(phantom_dir), "--model", str(tiny_snapshot)]
    assert main([*build, "--out", str(index)]) == 0
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["encoder"]["spec"] == str(tiny_snapshot.resolve())
    assert manifest["encoder"]["fingerprint"] == load_encoder(str(tiny_snapshot)).fingerprint
    capsys.readouterr()
    search = ["search", "--text", CAPTIONS[0], "--index", str(index), "--json", "--k", "3"]
    assert main([*search, "--model", str(tiny_snapshot / WEIGHTS)]) == 0
    with_model = json.loads(capsys.readouterr().out)
    assert main(search) == 0  # reopens the snapshot the manifest names
    assert json.loads(capsys.readouterr().out) == with_model
    out = tmp_path / "eval"
    argv = ["eval", "retrieval", "--data", str(phantom_dir), "--model", str(tiny_snapshot)]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert str(tiny_snapshot.resolve()) in json.dumps(report)


def test_clipscore_takes_a_snapshot_folder(
    tiny_snapshot: Path, phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medcap.data import open_dataset

    cases = list(open_dataset(phantom_dir).records("test"))[:3]
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "original_caption", "generated_caption"])
        writer.writerows((c.image_id, c.caption, CAPTIONS[0]) for c in cases)
    argv = ["eval", "captions", str(results), "--model", str(tiny_snapshot), "--data"]
    assert main([*argv, str(phantom_dir), "--json", "--no-meteor", "--no-bertscore"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clipscore"]["encoder"] == str(tiny_snapshot.resolve())
    assert report["clipscore"]["fingerprint"] == load_encoder(str(tiny_snapshot)).fingerprint
    assert 0.0 <= report["metrics"]["CLIPScore"] <= 2.5


@pytest.mark.slow
def test_train_from_a_biomedclip_snapshot_and_reload_offline(
    biomedclip_snapshot: Path, phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.network import network_refused

    out = tmp_path / "run"
    argv = ["train", "--data", str(phantom_dir), "--model", str(biomedclip_snapshot)]
    argv += ["--out", str(out), "--epochs", "1", "--max-steps", "1", "--batch-size", "8"]
    argv += ["--eval-max-items", "8", "--no-tensorboard", "--device", "cpu", "--lr", "1e-5"]
    assert main(argv) == 0
    start = load_encoder(str(biomedclip_snapshot))
    with network_refused(monkeypatch) as attempts:
        tuned = load_encoder(str(out))  # the text tower found through the snapshot it names
        vectors = tuned.encode_texts(CAPTIONS)
    assert attempts == []
    assert tuned.fingerprint != start.fingerprint and vectors.shape == (3, start.embed_dim)
    assert tuned.architecture["config"] == start.architecture["config"]
