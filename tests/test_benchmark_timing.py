"""The GPU benchmarks' timing rules (benchmarks/timing.py): warm-up untimed, the clock read
only after a synchronisation, averages over logged intervals rather than one interval."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from timing import medcap_rate, open_clip_rate, timed_rate  # noqa: E402


def test_timed_rate_reads_the_clock_after_sync_and_skips_the_warm_up() -> None:
    events: list[str] = []
    ticks = iter([10.0, 12.0])

    def clock() -> float:
        events.append("clock")
        return next(ticks)

    rate = timed_rate(lambda: events.append("work"), 500, lambda: events.append("sync"), clock)
    assert events == ["work", "sync", "clock", "work", "sync", "clock"]
    assert rate == 250.0  # 500 items in the 2 s between the two clock reads


def test_open_clip_rate_averages_the_logged_intervals() -> None:
    # open_clip prints each interval's mean batch time, then one step's rate (not used).
    log = "\n".join(
        f"Train Epoch: 0 [{i}/100] Data (t): 0.010 Batch (t): {t:.3f}, {r:#g}/s, {r:#g}/s/gpu"
        for i, (t, r) in enumerate([(9.0, 1.0), (9.0, 1.0), (0.5, 9999.0), (0.3, 9999.0)])
    )
    assert open_clip_rate(log, batch_size=256) == pytest.approx(256 / 0.4)  # warm-up left out
    assert open_clip_rate(log, batch_size=256, warmup_logs=0) == pytest.approx(256 / 4.7)
    with pytest.raises(ValueError, match="Batch"):
        open_clip_rate("no figures", batch_size=1)


def test_medcap_rate_is_total_samples_over_total_time() -> None:
    rows = [
        {"kind": "train", "step": 1, "samples_per_s": 10.0},  # warm-up
        {"kind": "train", "step": 10, "samples_per_s": 50.0},  # warm-up
        {"kind": "eval", "step": 10},
        {"kind": "train", "step": 20, "samples_per_s": 100.0},  # 10 steps at 100
        {"kind": "train", "step": 50, "samples_per_s": 600.0},  # 30 steps at 600
    ]
    # 40 steps over the time they took: 10 / 100 + 30 / 600 (a step of samples at rate 1)
    assert medcap_rate(rows) == pytest.approx(40 / (10 / 100 + 30 / 600))
    assert medcap_rate(rows) != pytest.approx((100 + 600) / 2)  # not a mean of rates
    with pytest.raises(ValueError, match="training rows"):
        medcap_rate([{"kind": "eval", "step": 1}])
