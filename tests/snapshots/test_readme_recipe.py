"""The README's real-data recipe, run as written against a bundle of mirrored repositories
with every socket refused: `MEDCAP_BUNDLE` alone turns the hub names in it into local loads.

The commands are read from the README; only the cost is cut, by options appended to a few
of them (one training step, a few captions, short captions) and by the BERTScore layer that
the shrunk DeBERTa mirror has (`--set`). The data is the phantom dataset, bundled under the
ROCOv2 hub name.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medcap.cli import main
from medcap.snapshots.bundle import BUNDLE_ENV
from tests.support.mirror_bundle import write_bundle
from tests.support.mirror_repos import (
    BERTSCORE_ID,
    BIOMEDBERT_ID,
    BIOMEDCLIP_ID,
    QWEN2VL_ID,
    id_folder,
)
from tests.support.network import network_refused

README = Path(__file__).resolve().parents[2] / "README.md"
DATASET_ID = "eltorio/ROCOv2-radiology"
# appended to the README's commands (the last value of an option wins): cost only
CHEAPER = {
    ("train",): ["--epochs", "1", "--max-steps", "1", "--batch-size", "8", "--eval-max-items", "8"],
    ("caption",): ["--limit", "3", "--max-new-tokens", "4"],
}
ROOT_OPTIONS = {("eval", "captions"): ["--set", "eval.bertscore_num_layers=2"]}


def readme_recipe() -> list[list[str]]:
    """The `medcap` commands of the first bash block under "## Real data and real weights"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Real data and real weights") :]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found is not None
    joined = found.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "medcap":
            commands.append(words[1:])
    return commands


def _key(argv: list[str]) -> tuple[str, ...]:
    return tuple(argv[:2]) if argv[0] in ("eval", "index", "data") else (argv[0],)


@pytest.mark.slow
def test_the_readme_recipe_runs_offline_from_a_bundle(
    biomedclip_snapshot: Path,
    qwen2vl_repo: Path,
    bertscore_repo: Path,
    phantom_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bare = Path(shutil.copytree(biomedclip_snapshot, tmp_path / "biomedclip"))
    shutil.rmtree(id_folder(bare, BIOMEDBERT_ID))
    bundle = write_bundle(
        tmp_path / "medcap-bundle",
        [
            ("model", BIOMEDCLIP_ID, "encoder", bare),
            ("model", BIOMEDBERT_ID, "text-model", id_folder(biomedclip_snapshot, BIOMEDBERT_ID)),
            ("model", QWEN2VL_ID, "generator", qwen2vl_repo),
            ("model", BERTSCORE_ID, "bertscore", bertscore_repo),
            ("dataset", DATASET_ID, "data", phantom_dir),
        ],
    )
    work = tmp_path / "work"
    work.mkdir()
    Image.new("RGB", (256, 200), (70, 80, 90)).save(work / "scan.jpg")
    monkeypatch.chdir(work)
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    commands = readme_recipe()
    assert [_key(c) for c in commands] == [
        ("data", "info"), ("train",), ("eval", "retrieval"), ("index", "build"), ("search",),
        ("caption",), ("eval", "captions"), ("report",),
    ]  # fmt: skip
    with network_refused(monkeypatch) as attempts:
        for argv in commands:
            key = _key(argv)
            full = [*ROOT_OPTIONS.get(key, []), *argv, *CHEAPER.get(key, [])]
            code = main(full)
            err = capsys.readouterr().err
            assert code == 0, f"medcap {shlex.join(full)}: {err}"
    assert attempts == []
    manifest = json.loads((work / "runs/rocov2-index/manifest.json").read_text())
    assert manifest["sources"][0]["dataset"] == DATASET_ID
    scores = json.loads((work / "runs/eval-captions/report.json").read_text())
    assert "BERTScore-F1" in scores["metrics"]
    assert (work / "runs/report/report.md").is_file()
