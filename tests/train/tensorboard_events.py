"""Read a run's TensorBoard event files with tensorboard's own reader, and its metrics.jsonl."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

Series = dict[str, list[tuple[int, float]]]  # tag -> (step, value) in logged order


def read_scalars(run_dir: Path) -> Series:
    """Every scalar in `run_dir/tensorboard`, as TensorBoard shows it (purged events hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def metrics_series(run_dir: Path) -> Series:
    """metrics.jsonl as TensorBoard series: `<kind>/<name>` for each value but step and epoch."""
    series: Series = defaultdict(list)
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for name, value in row.items():
            if name not in ("kind", "step", "epoch"):
                series[f"{row['kind']}/{name}"].append((row["step"], value))
    return dict(series)


def assert_same_series(events: Series, expected: Series) -> None:
    """The same tags, steps and values (event files store float32)."""
    assert sorted(events) == sorted(expected)
    for tag, points in expected.items():
        assert [step for step, _ in events[tag]] == [step for step, _ in points], tag
        assert [value for _, value in events[tag]] == pytest.approx(
            [value for _, value in points], rel=1e-6, abs=1e-9
        ), tag
