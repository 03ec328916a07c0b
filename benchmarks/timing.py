"""Timing rules shared by the GPU benchmarks (and tested in tests/test_benchmark_timing.py).

- Work queued on a GPU is done only when the device says so: read the clock after a
  synchronisation, never before.
- A warm-up pass at full size comes first (kernel selection, cuBLAS/cuDNN plans, worker
  start-up, compilation), and is not timed.
- Throughput over several logged intervals is total work over total time (an average),
  never one interval's figure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

WARMUP_LOGS = 2  # logged training intervals left out (start-up, compilation, first plans)


def timed_rate(
    fn: Callable[[], Any],
    n: int,
    sync: Callable[[], Any],
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Items per second of `fn` (which processes `n` items) after one untimed warm-up call;
    the clock is read only after `sync` returns."""
    fn()
    sync()
    start = clock()
    fn()
    sync()
    return n / (clock() - start)


def open_clip_rate(log: str, batch_size: int, warmup_logs: int = WARMUP_LOGS) -> float:
    """Samples/s of an open_clip_train run from its log: the mean over the logged intervals
    (after warm-up) of `Batch (t)`, which open_clip averages over each interval.

    The `.../s` figure on the same line is one step's (the last before the log line, timed
    without a GPU synchronisation), so it is not used.
    """
    times = [float(t) for t in re.findall(r"Batch \(t\): ([\d.]+)", log)]
    kept = times[warmup_logs:] or times
    if not kept:
        raise ValueError("no `Batch (t)` lines in the open_clip_train log")
    return batch_size / (sum(kept) / len(kept))


def medcap_rate(rows: Sequence[dict[str, Any]], warmup_logs: int = WARMUP_LOGS) -> float:
    """Samples/s of a `medcap train` run from its metrics.jsonl rows: total samples over
    total time of the logged training intervals after warm-up."""
    train = [r for r in rows if r.get("kind") == "train"]
    steps = [r["step"] for r in train]
    intervals = [
        (step - previous, row["samples_per_s"])
        for previous, step, row in zip([0, *steps], steps, train, strict=False)
    ]
    kept = intervals[warmup_logs:] or intervals
    if not kept:
        raise ValueError("no training rows in metrics.jsonl")
    # Each interval's samples are proportional to its steps (the same batch every step).
    total_steps = sum(n for n, _ in kept)
    total_time = sum(n / rate for n, rate in kept)
    return total_steps / total_time
