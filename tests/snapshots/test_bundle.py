"""Bundles as `medcap fetch` writes them: verify finds every missing, extra or damaged file
(one line each), recipes are data files, and MEDCAP_BUNDLE / `--bundle` resolve hub names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.errors import CorruptArtifactError, InputError
from medcap.snapshots.bundle import BUNDLE_ENV, bundle_model_dir, read_manifest
from medcap.snapshots.recipes import list_recipes, load_recipe
from medcap.snapshots.verify import verify_bundle
from tests.support.mirror_bundle import write_bundle

DATASET_ID = "eltorio/ROCOv2-radiology"


def _model_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert"}\n')
    (root / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (root / "sub").mkdir()
    (root / "sub" / "notes.txt").write_text("nested files keep their path\n")
    return root


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    model = _model_folder(tmp_path / "src-model")
    return write_bundle(tmp_path / "bundle", [("model", "org/model-a", "encoder", model)])


def test_a_written_bundle_verifies_and_resolves_hub_ids(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = read_manifest(bundle)
    (repo,) = manifest.repos
    assert repo.folder == "models/org--model-a" and len(repo.files) == 3
    assert {f.path for f in repo.files} >= {"models/org--model-a/sub/notes.txt"}
    report = verify_bundle(bundle)
    assert report.ok and report.checked == 3 and report.problems() == []
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    assert bundle_model_dir("org/model-a") is None
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    assert bundle_model_dir("org/model-a") == bundle / "models/org--model-a"
    assert bundle_model_dir("ORG/Model-A") == bundle / "models/org--model-a"  # as the hub
    assert bundle_model_dir("org/other") is None


def test_verify_reports_missing_extra_and_damaged_files_one_line_each(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = bundle / "models/org--model-a"
    (folder / "config.json").unlink()
    weights = folder / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    notes = folder / "sub" / "notes.txt"
    size = notes.stat().st_size
    notes.write_text(notes.read_text() + "appended\n")
    (folder / "stray.tmp").write_text("left behind\n")
    (folder / ".cache" / "huggingface").mkdir(parents=True)  # the hub client's resume state
    (folder / ".cache" / "huggingface" / "x.metadata").write_text("ignored\n")
    code = main(["fetch", "--verify", str(bundle)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [
        "missing: models/org--model-a/config.json",
        f"damaged: models/org--model-a/sub/notes.txt ({size + 9} bytes, expected {size})",
        "damaged: models/org--model-a/weights.bin (sha256 differs)",
        "extra: models/org--model-a/stray.tmp",
    ]
    assert err.strip() == f"4 problems in {bundle}; fetch it again"


def test_verify_ok_and_list_recipes_on_the_command_line(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "--verify", str(bundle)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"ok: 3 files in {bundle} match their sizes and sha256"
    )
    assert main(["fetch", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "\nrocov2-biomedclip-qwen2vl: BiomedCLIP" in f"\n{listing}"
    for repo in load_recipe("rocov2-biomedclip-qwen2vl").repos:
        assert repo.repo in listing
    assert f"{DATASET_ID}  [data] (with --with-data)" in listing


def test_shipped_recipes_name_what_the_readme_recipe_loads() -> None:
    recipes = {r.name: r for r in list_recipes()}
    main_recipe = recipes["rocov2-biomedclip-qwen2vl"]
    roles = {r.role: r.repo for r in main_recipe.repos}
    assert roles == {
        "encoder": "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        "text-model": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
        "generator": "Qwen/Qwen2-VL-2B-Instruct",
        "bertscore": "microsoft/deberta-xlarge-mnli",
        "data": DATASET_ID,
    }
    from medcap.config import DEFAULTS
    from medcap.generation.backends.base import backend_class

    assert backend_class("qwen2-vl").default_model == roles["generator"]
    assert DEFAULTS.eval.bertscore_model == roles["bertscore"]
    assert [r.repo for r in main_recipe.selected(with_optional=False)] == list(roles.values())[:4]
    assert "blip2" in " ".join(recipes)  # the BLIP-2 variant


def test_bad_recipes_and_bad_bundles_are_one_line_errors(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="unknown recipe 'nope'; known: rocov2-biomedclip"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[repos]]\nkind = "space"\nrepo = "a/b"\n')
    with pytest.raises(InputError, match="repos kind must be one of model, dataset"):
        load_recipe(str(bad))
    monkeypatch.setenv(BUNDLE_ENV, str(tmp_path))
    with pytest.raises(InputError, match="is not a medcap bundle"):
        bundle_model_dir("org/model-a")
    (bundle / "bundle.json").write_text("{not json")
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    with pytest.raises(CorruptArtifactError, match="damaged bundle manifest"):
        bundle_model_dir("org/model-a")


def test_the_bundle_option_holds_for_one_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from medcap.encoder import load_encoder
    from medcap.retrieval.rank import rank_captions
    from tests.support.mirror_repos import write_clip_snapshot

    snapshot = write_clip_snapshot(
        tmp_path / "snap", load_encoder("medcap-tiny").model, "medcap-tiny"
    )
    bundle = write_bundle(tmp_path / "bundle", [("model", "org/tiny-clip", "encoder", snapshot)])
    image = tmp_path / "scan.png"
    Image.new("L", (80, 64), 90).save(image)
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    argv = ["rank", str(image), "--caption", "CT of the chest", "--caption", "MRI of the knee"]
    code = main(["--bundle", str(bundle), *argv, "--model", "hf-hub:org/tiny-clip", "--json"])
    ranked = json.loads(capsys.readouterr().out)["captions"]
    assert code == 0 and BUNDLE_ENV not in os.environ  # restored after the command
    expected = rank_captions(image, ["CT of the chest", "MRI of the knee"], model=str(snapshot))
    assert [r["caption"] for r in ranked] == [r.caption for r in expected]
    assert ranked[0]["score"] == pytest.approx(expected[0].score, abs=1e-6)
    assert main(["--bundle", str(tmp_path), "fetch", "--list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is not a medcap bundle") and err.count("\n") == 1


def test_a_hub_dataset_name_opens_from_the_bundle(
    phantom_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medcap.data import open_dataset

    bundle = write_bundle(tmp_path / "bundle", [("dataset", DATASET_ID, "data", phantom_dir)])
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    argv = ["--bundle", str(bundle), "data", "info", DATASET_ID, "--json", "--max-images", "2"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    reference = open_dataset(phantom_dir)
    assert info["name"] == DATASET_ID
    assert {split: s["count"] for split, s in info["splits"].items()} == {
        split: reference.count(split) for split in reference.splits()
    }
