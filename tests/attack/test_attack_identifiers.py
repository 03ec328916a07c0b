"""Identifiers: only the kept metadata columns of a dataset reach an index (and its answers)."""

from __future__ import annotations

import csv
import json
import random
import string
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS
from medcap.data.phantoms.generate import ATTRIBUTE_FIELDS
from medcap.index import open_index
from tests.attack.helpers import write_blank_png

N = 6
_RNG = random.Random(12)
# Values sharing no 4-byte run, so parquet's compression (snappy) stores them literally and a
# byte scan of the index finds them wherever they were kept (the control test checks it).
NAMES = ["".join(_RNG.choices(string.ascii_letters + string.digits, k=16)) for _ in range(N)]
PATIENT_IDS = ["".join(_RNG.choices(string.ascii_letters + string.digits, k=16)) for _ in range(N)]


def _dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    with open(root / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "image_id", "caption", "modality", "PatientName", "PatientID"])
        for i in range(N):
            write_blank_png(root / "images" / f"c{i}.png", 16 + i, 16)
            writer.writerow(
                [f"images/c{i}.png", f"c{i}", f"CT of case {i}.", "CT", NAMES[i], PATIENT_IDS[i]]
            )
    return root


def _bytes_of(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _build(data: Path, out: Path, *flags: str) -> int:
    return main(
        ["index", "build", "--data", str(data), "--out", str(out), "--model", "medcap-tiny",
         "--batch-size", "8", "--device", "cpu", *flags]
    )  # fmt: skip


def test_identifiers_are_not_copied_into_an_index_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "ds")
    assert _build(data, tmp_path / "index") == 0
    out = capsys.readouterr().out
    assert "not stored: columns PatientID, PatientName" in out
    stored = _bytes_of(tmp_path / "index")
    for value in [*NAMES, *PATIENT_IDS]:
        assert value.encode() not in stored, value
    index = open_index(tmp_path / "index")
    assert index.hit(0).extra == {"modality": "CT"}
    assert index.manifest.sources[0].kept_columns == DEFAULTS.data.keep_columns
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["sources"][0]["kept_columns"] == list(DEFAULTS.data.keep_columns)

    assert main(["search", "--text", "CT", "--index", str(tmp_path / "index"), "--json"]) == 0
    answer = capsys.readouterr().out
    assert "PatientName" not in answer and NAMES[0] not in answer and '"modality"' in answer


def test_identifiers_are_kept_when_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "ds")
    assert _build(data, tmp_path / "index", "--keep-columns", "PatientName") == 0
    assert "not stored: columns PatientID, modality" in capsys.readouterr().out
    stored = _bytes_of(tmp_path / "index")
    assert all(name.encode() in stored for name in NAMES)  # the byte scan does see values
    assert not any(pid.encode() in stored for pid in PATIENT_IDS)
    index = open_index(tmp_path / "index")
    assert set(index.hit(0).extra) == {"PatientName"}
    assert index.manifest.sources[0].kept_columns == ("PatientName",)


def test_identifiers_default_keeps_what_the_app_and_phantoms_show() -> None:
    keep = set(DEFAULTS.data.keep_columns)
    assert {name for name, _ in ATTRIBUTE_FIELDS} <= keep
    assert set(DEFAULTS.app.card_fields) <= keep
    assert set(DEFAULTS.eval.match_attributes) <= keep
    assert {"modality", "region"} <= keep
