"""`medcap fetch` end to end against a stand-in hub on 127.0.0.1, then the bundle used offline.

The real huggingface_hub client downloads over a real socket from tests.support.fake_hub (the
public hub cannot be reached here): the recipe's repositories land in the bundle, pinned to
their commits, with a manifest that `--verify` checks; a rerun downloads nothing again; and
the bundle then serves `hf-hub:` specs and hub dataset names with every socket refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from medcap.encoder import load_encoder
from medcap.snapshots.bundle import BUNDLE_ENV, read_manifest
from medcap.snapshots.recipes import read_recipe
from medcap.snapshots.verify import verify_bundle
from tests.support.fake_hub import fake_hub, repo_from_folder
from tests.support.mirror_repos import BIOMEDBERT_ID, BIOMEDCLIP_ID, id_folder

SRC = Path(__file__).resolve().parents[2] / "src"
DATASET_ID = "eltorio/ROCOv2-radiology"
RECIPE = f"""
description = "test recipe: BiomedCLIP, its text model, ROCOv2-shaped data"
[[repos]]
kind = "model"
repo = "{BIOMEDCLIP_ID}"
role = "encoder"
include = ["open_clip_config.json", "open_clip_pytorch_model.bin", "tokenizer.json",
           "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]
[[repos]]
kind = "model"
repo = "{BIOMEDBERT_ID}"
role = "text-model"
include = ["config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
[[repos]]
kind = "dataset"
repo = "{DATASET_ID}"
role = "data"
optional = true
include = ["data/*.parquet"]
"""


def _run_fetch(endpoint: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "MEDCAP_OFFLINE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "medcap", "fetch", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fetch_writes_a_verified_bundle_that_loads_offline(
    biomedclip_snapshot: Path,
    phantom_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bare = Path(shutil.copytree(biomedclip_snapshot, tmp_path / "biomedclip"))
    shutil.rmtree(id_folder(bare, BIOMEDBERT_ID))
    (bare / "README.md").write_text("not in the recipe's include patterns\n")
    commits = {BIOMEDCLIP_ID: "a1" * 20, BIOMEDBERT_ID: "b2" * 20, DATASET_ID: "c3" * 20}
    repos = [
        repo_from_folder("model", BIOMEDCLIP_ID, bare, commits[BIOMEDCLIP_ID]),
        repo_from_folder(
            "model",
            BIOMEDBERT_ID,
            id_folder(biomedclip_snapshot, BIOMEDBERT_ID),
            commits[BIOMEDBERT_ID],
        ),
        repo_from_folder("dataset", DATASET_ID, phantom_dir, commits[DATASET_ID]),
    ]
    recipe = tmp_path / "test-recipe.toml"
    recipe.write_text(RECIPE)
    bundle = tmp_path / "bundle"
    with fake_hub(repos) as (endpoint, requests):
        done = _run_fetch(
            endpoint, "--recipe", str(recipe), "--out", str(bundle), "--with-data", home=tmp_path
        )
        assert done.returncode == 0, done.stderr
        first_downloads = [r for r in requests if r.startswith("GET") and "/resolve/" in r]
        requests.clear()
        gone = _run_fetch(
            "http://127.0.0.1:9", "--recipe", str(recipe), "--out", str(bundle), home=tmp_path
        )
        assert gone.returncode == 1 and gone.stderr.startswith("error: cannot fetch model")
        assert gone.stderr.count("\n") == 1
        assert not (bundle / "bundle.json").exists()  # an unfinished fetch leaves no bundle
        again = _run_fetch(
            endpoint, "--recipe", str(recipe), "--out", str(bundle), "--with-data", home=tmp_path
        )
        assert again.returncode == 0, again.stderr
        assert [r for r in requests if r.startswith("GET") and "/resolve/" in r] == []  # resumed
    assert f"fetching model {BIOMEDCLIP_ID} (main)" in done.stdout
    manifest = read_manifest(bundle)
    assert {r.repo: r.revision for r in manifest.repos} == commits
    assert all(r.requested == "main" for r in manifest.repos)
    source = {repo.repo: repo for repo in repos}
    patterns = {r.repo: r.include for r in read_recipe(recipe).repos}
    for entry in manifest.repos:
        files = {f.path.removeprefix(entry.folder + "/"): f for f in entry.files}
        wanted = {
            p for p in source[entry.repo].files if any(fnmatch(p, i) for i in patterns[entry.repo])
        }
        assert "README.md" not in wanted and len(wanted) >= 3
        assert set(files) == wanted
        for name, listed in files.items():
            assert listed.sha256 == hashlib.sha256(source[entry.repo].files[name]).hexdigest()
    assert len(first_downloads) == sum(len(r.files) for r in manifest.repos)
    report = verify_bundle(bundle)
    assert report.ok and report.checked == len(manifest.files())

    # the offline machine: every socket refused, the bundle named by MEDCAP_BUNDLE
    from medcap.data import open_dataset
    from tests.support.network import network_refused

    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    with network_refused(monkeypatch) as attempts:
        bundled = load_encoder(f"hf-hub:{BIOMEDCLIP_ID}")
        data = open_dataset(DATASET_ID)
        counts = {split: data.count(split) for split in data.splits()}
    assert attempts == []
    assert bundled.fingerprint == load_encoder(str(biomedclip_snapshot)).fingerprint
    reference = open_dataset(phantom_dir)
    assert counts == {split: reference.count(split) for split in reference.splits()}
    assert json.loads((bundle / "bundle.json").read_text())["recipe"] == "test-recipe"


def test_fetch_refuses_offline_mode_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medcap.cli import main

    code = main(["fetch", "--recipe", "rocov2-biomedclip-qwen2vl", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: `medcap fetch` downloads from the hub")
    assert err.count("\n") == 1 and not (tmp_path / "b").exists()
