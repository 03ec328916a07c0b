"""`train_encoder`: loss falls, outputs, checkpoint reload, resume, locks, accumulation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medcap.config import DEFAULTS
from medcap.encoder import load_encoder
from medcap.encoder.checkpoint import fingerprint_state, read_sidecar
from medcap.errors import InputError
from medcap.train.loop import train_encoder


def _small(**changes: Any) -> Any:
    base = dataclasses.replace(
        DEFAULTS.train,
        epochs=3,
        batch_size=32,
        lr=1e-3,
        warmup_steps=2,
        log_every_steps=1,
        checkpoint_every_steps=2,
        device="cpu",
        num_threads=1,  # see tests/fixtures_encoder.py
    )
    return dataclasses.replace(base, **changes)


def _rows(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["kind"] == kind]


def test_trained_run_outputs_and_falling_loss(trained_checkpoint: Path) -> None:
    run_dir = trained_checkpoint.parent
    for name in ("config.json", "metrics.jsonl", "best.pt", "best.json", "last.pt", "last.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    losses = [row["loss"] for row in _rows(run_dir, "train")]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    evals = _rows(run_dir, "eval")
    assert len(evals) == json.loads((run_dir / "config.json").read_text())["train"]["epochs"]
    sidecar = read_sidecar(trained_checkpoint)
    assert sidecar["architecture"]["name"] == "medcap-tiny"
    assert sidecar["metrics"]["mean_recall"] == max(e["mean_recall"] for e in evals)
    assert sidecar["train_config"]["batch_size"] == 32


def test_trained_encoder_retrieves_far_above_chance(
    trained_encoder: Any, phantom_dataset: Any
) -> None:
    records = list(phantom_dataset.records("valid")) + list(phantom_dataset.records("test"))
    kept, images, captions, _ = trained_encoder.encode_cases(records)
    scores = images @ captions.T
    n = len(kept)
    top5 = np.argsort(-scores, axis=1)[:, :5]
    recall5 = np.mean([i in row for i, row in enumerate(top5)])
    assert recall5 > 3 * 5 / n  # chance is 5 / n
    sims = images @ images.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(1)
    modality = [r.extra["modality"] for r in kept]
    assert np.mean([modality[i] == modality[j] for i, j in enumerate(nearest)]) > 0.6


def test_checkpoint_reloads_by_file_dir_and_sidecar(
    trained_checkpoint: Path, trained_encoder: Any, phantom_dataset: Any
) -> None:
    records = list(phantom_dataset.records("valid"))[:8]
    _, reference, ref_text, _ = trained_encoder.encode_cases(records)
    for spec in (trained_checkpoint.parent, trained_checkpoint.with_suffix(".json")):
        encoder = load_encoder(str(spec), device="cpu")
        assert encoder.fingerprint == trained_encoder.fingerprint
        assert encoder.spec == str(trained_checkpoint.resolve())
        _, images, texts, _ = encoder.encode_cases(records)
        np.testing.assert_array_equal(images, reference)
        np.testing.assert_array_equal(texts, ref_text)
    recomputed = fingerprint_state(trained_encoder.architecture, trained_encoder.model.state_dict())
    assert (
        recomputed == trained_encoder.fingerprint == read_sidecar(trained_checkpoint)["fingerprint"]
    )


class _Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_end(phantom_dir: Path, tmp_path: Path) -> None:
    cfg = _small()
    straight = train_encoder(phantom_dir, tmp_path / "straight", cfg=cfg)

    def crash_at_step_7(step: int, loss: float) -> None:
        if step == 7:
            raise _Crash("simulated kill after step 7")

    crashed = tmp_path / "crashed"
    with pytest.raises(_Crash):
        train_encoder(phantom_dir, crashed, cfg=cfg, on_step=crash_at_step_7)
    assert read_sidecar(crashed / "last.pt")["step"] == 6  # the newest checkpoint
    with pytest.raises(InputError, match="--resume"):
        train_encoder(phantom_dir, crashed, cfg=cfg)
    resumed = train_encoder(phantom_dir, crashed, cfg=cfg, resume=True)

    assert resumed.steps == straight.steps == 3 * (160 // 32)
    losses = {r["step"]: r["loss"] for r in _rows(crashed, "train")}
    reference = {r["step"]: r["loss"] for r in _rows(tmp_path / "straight", "train")}
    assert sorted(losses) == list(range(1, straight.steps + 1))  # step 7 logged once, no gaps
    np.testing.assert_allclose(
        [losses[s] for s in sorted(losses)], [reference[s] for s in sorted(reference)], rtol=1e-4
    )
    a = torch.load(crashed / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_lock_image_tower_trains_only_text(phantom_dir: Path, tmp_path: Path) -> None:
    start = load_encoder("medcap-tiny", device="cpu").model.state_dict()
    result = train_encoder(
        phantom_dir, tmp_path / "locked", cfg=_small(lock_image=True, max_steps=2)
    )
    trained = torch.load(result.last_checkpoint, weights_only=True)["state_dict"]
    visual = [k for k in trained if k.startswith("visual.")]
    text = [
        k for k in trained if k.startswith(("transformer.", "token_embedding", "text_projection"))
    ]
    assert visual and text
    assert all(torch.equal(trained[k], start[k]) for k in visual)
    assert any(not torch.equal(trained[k], start[k]) for k in text)


def test_decoding_each_epoch_matches_the_cache(phantom_dir: Path, tmp_path: Path) -> None:
    cached = train_encoder(phantom_dir, tmp_path / "cached", cfg=_small(epochs=1, max_steps=3))
    streamed = train_encoder(
        phantom_dir, tmp_path / "streamed", cfg=_small(epochs=1, max_steps=3, cache_max_gb=0.0)
    )
    assert cached.steps == streamed.steps == 3
    a = [r["loss"] for r in _rows(tmp_path / "cached", "train")]
    b = [r["loss"] for r in _rows(tmp_path / "streamed", "train")]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_gradient_accumulation_equals_one_big_batch() -> None:
    from medcap.train.setup import build_run
    from medcap.train.step import train_step

    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(32, 3, 64, 64, generator=generator)
    tokens = torch.randint(1, 1000, (32, 32), generator=generator)

    def one_step(accum: int) -> tuple[float, dict[str, torch.Tensor]]:
        cfg = _small(grad_accum_steps=accum, batch_size=32 // accum, warmup_steps=0)
        run = build_run("medcap-tiny", cfg, 0, 1, torch.device("cpu"))
        run.optimizer = torch.optim.SGD(run.core.parameters(), lr=1.0)  # the step is the gradient
        run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda step: 1.0)
        size = 32 // accum
        micro = [
            (pixels[i * size : (i + 1) * size], tokens[i * size : (i + 1) * size])
            for i in range(accum)
        ]
        return float(train_step(run, micro)), run.core.state_dict()

    loss_1, state_1 = one_step(1)
    loss_4, state_4 = one_step(4)
    assert loss_1 == pytest.approx(loss_4, rel=1e-5)
    start = load_encoder("medcap-tiny", device="cpu").model.state_dict()
    moved = [k for k in state_1 if not torch.equal(state_1[k], start[k])]
    assert len(moved) > 10
    for key in state_1:
        torch.testing.assert_close(state_1[key], state_4[key], atol=1e-5, rtol=1e-4)


def test_too_few_cases_and_bad_options(tmp_path: Path, phantom_dir: Path) -> None:
    with pytest.raises(InputError, match="at least 1|>= 1"):
        train_encoder(phantom_dir, tmp_path / "zero", cfg=_small(epochs=0))
    with pytest.raises(InputError, match="locked"):
        train_encoder(phantom_dir, tmp_path / "both", cfg=_small(lock_image=True, lock_text=True))
