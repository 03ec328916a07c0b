"""`import medcap`: a lazy, curated top level that stays light until a call needs more."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import medcap

HEAVY = ("torch", "faiss", "open_clip", "PIL", "transformers", "peft", "streamlit", "datasets")
SRC = Path(medcap.__file__).resolve().parents[1]


def _loaded_after(code: str) -> list[str]:
    """Heavy modules in sys.modules after running `code` in a fresh interpreter."""
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "MEDCAP_OFFLINE": "1"},
        timeout=120,
    )
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return [m for m in HEAVY if m in modules]


def test_import_medcap_loads_no_heavy_library() -> None:
    assert _loaded_after("import medcap; medcap.Hit; medcap.InputError; dir(medcap)") == []


def test_medcap_help_loads_no_heavy_library() -> None:
    code = "from medcap.cli import main\nassert main(['--help']) == 0"
    assert _loaded_after(code) == []


def test_opening_an_index_loads_no_encoder(phantom_index_dir: Path) -> None:
    code = (
        f"import medcap\nindex = medcap.open_index({str(phantom_index_dir)!r})\n"
        "assert len(index) > 0 and index.column('modality')\n"
        "assert index.index.matching_rows({'split': 'train'}) is not None"
    )
    loaded = _loaded_after(code)
    assert "torch" not in loaded and "open_clip" not in loaded and "faiss" in loaded


def test_every_public_name_resolves_and_is_listed() -> None:
    names = set(medcap.__all__) - {"__version__"}
    assert names == set(medcap._LAZY)
    assert names <= set(dir(medcap))
    for name in sorted(names):
        assert getattr(medcap, name) is not None, name
    assert issubclass(medcap.InputError, medcap.MedcapError)
    with pytest.raises(AttributeError, match="no attribute 'no_such_call'"):
        medcap.no_such_call  # noqa: B018


def test_unknown_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(medcap.InputError, match=r"unknown retrieval option\(s\) sample_size"):
        medcap.evaluate_retrieval(tmp_path, ["medcap-tiny"], sample_size=10)
    with pytest.raises(medcap.InputError, match=r"unknown eval option\(s\) imageclef\b"):
        medcap.score_captions(tmp_path / "results.csv", imageclef=True)
