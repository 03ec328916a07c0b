"""Item 9: a caption run resumes only with the settings it was started with."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.runs.caption import BatchRun, caption_split, run_file_of
from tests.attack.helpers import build_small_index, one_error_line, run_cli

CFG = replace(DEFAULTS.generation, k=3, batch_size=8)


@pytest.fixture(scope="module")
def retriever(attack_index: Path) -> Any:
    from medcap.retrieval.retriever import open_retriever

    return open_retriever(attack_index, device="cpu")


def _ids(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return [row["image_id"] for row in csv.DictReader(handle)]


def _caption(run: BatchRun, retriever: Any, **options: Any) -> Any:
    cfg = options.pop("cfg", CFG)
    return caption_split(run, cfg, retriever=retriever, progress=False, **options)


def test_rerun_with_other_settings_is_refused_naming_them(
    phantom_dir: Path, attack_index: Path, retriever: Any, tmp_path: Path
) -> None:
    out = tmp_path / "captions.csv"
    run = BatchRun(str(phantom_dir), "test", str(attack_index), str(out))
    assert _caption(run, retriever, limit=6).written == 6
    identity = json.loads(run_file_of(out).read_text())["identity"]
    assert identity["k"] == 3 and identity["split"] == "test" and identity["limit"] == 6
    before = out.read_bytes()
    changes = {
        "k=3": {"cfg": replace(CFG, k=4)},
        "split='test'": {"run": replace(run, split="valid")},
        "template='default'": {"cfg": replace(CFG, template="smallcap")},
        "search_mode='captions'": {"cfg": replace(CFG, search_mode="images")},
        "limit=6": {"limit": 4},
    }
    for named, change in changes.items():
        with pytest.raises(InputError, match=named) as err:
            _caption(change.pop("run", run), retriever, limit=change.pop("limit", 6), **change)
        assert "--overwrite" in str(err.value)
        assert out.read_bytes() == before  # nothing appended or lost
    assert _caption(run, retriever, limit=6).resumed == 6  # same settings: resumes
    extended = _caption(run, retriever, limit=9)  # a larger limit continues the same run
    assert (extended.resumed, extended.written) == (6, 3)
    fresh = _caption(run, retriever, limit=5, cfg=replace(CFG, k=4), overwrite=True)
    assert fresh.written == 5 and len(_ids(out)) == 5


def test_other_data_or_index_is_refused(
    phantom_dir: Path,
    phantom_dataset: Any,
    attack_index: Path,
    attack_checkpoint: Path,
    retriever: Any,
    tmp_path: Path,
) -> None:
    from medcap.data import build_phantoms

    out = tmp_path / "captions.csv"
    run = BatchRun(str(phantom_dir), "test", str(attack_index), str(out))
    _caption(run, retriever, limit=4)
    other_data = build_phantoms(tmp_path / "other", n=30, seed=5, image_size=64)
    with pytest.raises(InputError, match="data_fingerprint"):
        _caption(replace(run, data=str(other_data)), retriever, limit=4)
    other_index = build_small_index(phantom_dataset, attack_checkpoint, tmp_path / "idx2", cases=20)
    with pytest.raises(InputError, match="index_fingerprint"):
        _caption(replace(run, index_dir=str(other_index)), retriever, limit=4)
    assert len(_ids(out)) == 4


def test_a_csv_without_its_run_file_is_not_resumed(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, attack_index: Path, tmp_path: Path
) -> None:
    out = tmp_path / "captions.csv"
    base = ["caption", "--index", attack_index, "--data", phantom_dir, "--split", "test"]
    assert run_cli(capsys, *base, "--out", out, "--limit", "3")[0] == 0
    run_file_of(out).unlink()
    code, _, err = run_cli(capsys, *base, "--out", out, "--limit", "3")
    assert code == 1 and "run file" in one_error_line(err) and "--overwrite" in err
    code, stdout, _ = run_cli(capsys, *base, "--out", out, "--limit", "3", "--overwrite")
    assert code == 0 and "3 captions written, 0 already there" in stdout
