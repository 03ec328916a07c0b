"""`medcap demo` end to end on a small phantom set: artifacts, report, determinism."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medcap.config import DEFAULTS, DemoConfig
from medcap.errors import InputError
from medcap.runs.demo import MARKER, run_demo

SMALL = DemoConfig(n=160, seed=3, image_size=64, epochs=1, example_searches=2)
# METEOR starts a JVM; the caption-metric tests cover it, so the demo test skips it.
ROOT = dataclasses.replace(DEFAULTS, eval=dataclasses.replace(DEFAULTS.eval, meteor=False))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("demo") / "run"
    first = run_demo(out, SMALL, root=ROOT)
    first_metrics = json.loads((out / MARKER).read_text())["metrics"]
    second = run_demo(out, SMALL, root=ROOT)  # same directory: cleared and rebuilt
    assert second.report == first.report
    return out, first_metrics, json.loads((out / MARKER).read_text())["metrics"]


@pytest.mark.slow
def test_demo_writes_every_artifact(demo_runs: tuple[Path, dict, dict]) -> None:
    out, metrics, _ = demo_runs
    for name in (
        "phantoms",
        "encoder/best.pt",
        "index/manifest.json",
        "report/report.md",
        "eval-retrieval/report.json",
        "captions-consensus.csv",
        "queries",
    ):
        assert (out / name).exists(), name
    report = (out / "report" / "report.md").read_text()
    for link in report.split("](")[1:]:
        target = link.split(")")[0]
        if not target.startswith("http"):
            assert (out / "report" / target).exists(), target
    assert set(metrics["retrieval"]) == {"medcap-tiny", "encoder/best.pt"}
    assert set(metrics["captions"]) == {"consensus", "random-caption"}


@pytest.mark.slow
def test_demo_is_deterministic_for_a_seed(demo_runs: tuple[Path, dict, dict]) -> None:
    _, first, second = demo_runs
    assert first == second


def test_demo_refuses_to_clear_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a medcap demo directory"):
        run_demo(tmp_path, SMALL, root=ROOT)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
