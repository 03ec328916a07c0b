"""Fuzz: every reader and `load_image` give a correct result or one line, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.attack.fuzz_targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
MAX_GROWTH_MB = 150  # a decoded bomb or a runaway parquet allocation would take far more


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_reader_gives_a_result_or_one_line_in_bounded_memory(
    target: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.attack.fuzz_targets", target, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["target"] == target and result["examples"] >= 100
    assert result["peak_growth_mb"] < MAX_GROWTH_MB, result
