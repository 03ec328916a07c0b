"""`medcap train` writes TensorBoard event files that hold what metrics.jsonl holds."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS
from medcap.train.loop import train_encoder
from tests.train.tensorboard_events import assert_same_series, metrics_series, read_scalars

REQUIRED_TAGS = {
    "train/loss",
    "train/lr",
    "train/logit_scale",  # the learned temperature, exp(logit_scale)
    "train/samples_per_s",
    *(f"eval/{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)),
    "eval/i2t_median_rank",
    "eval/mean_recall",
}


def _tiny(**changes: Any) -> Any:
    base = dataclasses.replace(
        DEFAULTS.train,
        epochs=2,
        batch_size=32,
        lr=1e-3,
        warmup_steps=2,
        log_every_steps=1,
        checkpoint_every_steps=2,
        device="cpu",
        num_threads=1,  # see tests/fixtures_encoder.py
    )
    return dataclasses.replace(base, **changes)


class _Crash(RuntimeError):
    pass


def test_event_files_match_metrics_also_after_a_crash_and_resume(
    phantom_dir: Path, tmp_path: Path
) -> None:
    cfg = _tiny()
    run = tmp_path / "run"

    def crash_at_step_7(step: int, loss: float) -> None:
        if step == 7:
            raise _Crash("simulated kill after step 7")

    with pytest.raises(_Crash):
        train_encoder(phantom_dir, run, cfg=cfg, on_step=crash_at_step_7)
    crashed = read_scalars(run)
    assert [step for step, _ in crashed["train/loss"]] == list(range(1, 8))
    assert_same_series(crashed, metrics_series(run))

    result = train_encoder(phantom_dir, run, cfg=cfg, resume=True)  # from last.pt at step 6
    events = read_scalars(run)
    assert set(events) >= REQUIRED_TAGS
    assert [step for step, _ in events["train/loss"]] == list(range(1, result.steps + 1))
    assert [step for step, _ in events["eval/i2t_R@1"]] == [
        result.steps // cfg.epochs * (e + 1) for e in range(cfg.epochs)
    ]
    assert_same_series(events, metrics_series(run))  # step 7 once: the first try is purged
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_a_fresh_run_replaces_old_event_files(phantom_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    stale = run / "tensorboard" / "events.out.tfevents.0.stale"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a run that died before its first checkpoint")
    result = train_encoder(phantom_dir, run, cfg=_tiny(epochs=1))
    assert not stale.exists()
    events = read_scalars(run)
    assert [step for step, _ in events["train/loss"]] == list(range(1, result.steps + 1))
    assert_same_series(events, metrics_series(run))


def test_without_tensorboard_training_works_and_says_so(
    phantom_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As if the [tb] extra were not installed: importing either module fails.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    caplog.set_level(logging.INFO, logger="medcap")
    result = train_encoder(phantom_dir, tmp_path / "run", cfg=_tiny(epochs=1, max_steps=2))
    assert result.steps == 2 and result.best_checkpoint.is_file()
    notes = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("TensorBoard logs are off")
    assert "medcap[tb]" in notes[0]
    assert [r["step"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").open())] == [
        1,
        2,
        2,
    ]  # two train lines and the validation
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_no_tensorboard_flag_turns_event_files_off(
    phantom_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="medcap")
    args = ["train", "--data", str(phantom_dir), "--out", str(out), "--epochs", "1"]
    args += ["--max-steps", "2", "--batch-size", "32", "--device", "cpu", "--num-threads", "1"]
    assert main([*args, "--no-tensorboard"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["tensorboard"] is False
    assert (out / "metrics.jsonl").is_file() and not (out / "tensorboard").exists()
    assert not [r for r in caplog.records if "TensorBoard" in r.getMessage()]
