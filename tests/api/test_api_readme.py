"""The README's "Python API" snippet runs as written, on a small demo-out built from fixtures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The first python code block after the "## Python API" heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "README has no python block under ## Python API"
    return found.group(1)


@pytest.fixture()
def demo_out(
    tmp_path: Path,
    phantom_dir: Path,
    trained_checkpoint: Path,
    phantom_index_dir: Path,
    phantom_retriever: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """tmp_path/demo-out laid out as `make demo` writes it, from the session fixtures."""
    from medcap.config import DEFAULTS
    from medcap.runs.caption import BatchRun, caption_split

    demo = tmp_path / "demo-out"
    demo.mkdir()
    (demo / "phantoms").symlink_to(phantom_dir)
    (demo / "encoder").symlink_to(trained_checkpoint.parent)
    (demo / "index").symlink_to(phantom_index_dir)
    run = BatchRun(
        str(phantom_dir), "test", str(phantom_index_dir), str(demo / "captions-consensus.csv")
    )
    caption_split(run, DEFAULTS.generation, retriever=phantom_retriever, progress=False)
    monkeypatch.chdir(tmp_path)
    return demo


def test_readme_python_api_snippet_runs(demo_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_snippet(), str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "['train', 'valid', 'test'] 20" in out
    results = namespace["results"]
    assert len(results) == 4
    for result in results:
        assert len(result.neighbours) == 5 and result.seconds > 0
        assert result.text in [hit.caption for hit in result.neighbours]  # consensus copies one
        assert [h.image_id for h in result.neighbours] == list(result.prompt.neighbour_ids)
    report = json.loads(Path("eval-retrieval/report.json").read_text())
    assert report["kind"] == "retrieval" and report["gallery_size"] == 20
    assert (Path("eval-retrieval") / "report.md").exists()
    valid = json.loads(Path("valid-index/manifest.json").read_text())
    assert valid["count"] == 20 and valid["sources"][0]["split"] == "valid"
    assert namespace["scores"].n == 20 and "CIDEr" in namespace["scores"].metrics
    ranked = namespace["ranked"]
    assert [r.rank for r in ranked] == [1, 2] and {r.position for r in ranked} == {0, 1}
    assert ranked[0].score >= ranked[1].score and isinstance(
        ranked[0], namespace["medcap"].RankedCaption
    )
