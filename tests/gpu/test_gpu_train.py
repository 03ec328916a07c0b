"""Encoder training on CUDA: a short run end to end, steady-state steps that never make the
host wait for the GPU, and a SigLIP-style model's logit bias trained there."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from medcap.config import DEFAULTS
from medcap.data import open_dataset
from tests.train.test_train_distributed import siglip_config

pytestmark = pytest.mark.gpu


def _cfg(**changes: Any) -> Any:
    base = dataclasses.replace(
        DEFAULTS.train, epochs=1, batch_size=32, lr=1e-3, warmup_steps=2, log_every_steps=1,
        checkpoint_every_steps=1000, device="cuda", seed=0,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_a_short_cuda_run_trains_and_writes_checkpoints(phantom_dir: Path, tmp_path: Path) -> None:
    from medcap.encoder import load_encoder
    from medcap.train.loop import train_encoder

    result = train_encoder(phantom_dir, tmp_path / "run", cfg=_cfg(epochs=2))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["device"] == "cuda:0"  # `cuda` means this process's own GPU
    assert result.steps == 2 * (160 // 32)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
    assert all(r["samples_per_s"] > 0 for r in rows if r["kind"] == "train")
    encoder = load_encoder(str(result.best_checkpoint), device="cpu")
    assert encoder.encode_texts(["CT of the chest"]).shape == (1, 64)


def _steady_state(phantom_dir: Path, model: str) -> tuple[Any, Any, Any]:
    """(run, cached train cases on the GPU, micro-batch groups of one epoch)."""
    from medcap.train.data import epoch_batches
    from medcap.train.setup import build_run, init_distributed, load_split
    from medcap.train.state import warmup_cosine
    from medcap.train.step import micro_batch_groups

    cfg = _cfg()
    _, _, device, _ = init_distributed(cfg.device)
    run = build_run(model, cfg, 0, 1, device)
    cases = load_split(open_dataset(phantom_dir), "train", None, run)
    assert cases.images is not None
    cases.images, cases.tokens = cases.images.to(device), cases.tokens.to(device)
    run.equal_batches = True
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, warmup_cosine(100, 2, 0.0))
    steps = epoch_batches(len(cases), cfg.batch_size, 1, epoch=0, seed=0, rank=0, world_size=1)
    return run, cases, micro_batch_groups(run, cases, steps, 0)


def test_steady_state_steps_do_not_wait_for_the_gpu(phantom_dir: Path) -> None:
    from medcap.train.step import prepare, train_step

    run, cases, groups = _steady_state(phantom_dir, "medcap-tiny")
    train_step(run, prepare(run, cases, next(groups), 0))  # warm-up: lazy state, first copies
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation now raises
    try:
        losses = [train_step(run, prepare(run, cases, next(groups), s)) for s in (1, 2, 3)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(math.isfinite(float(loss)) for loss in losses)


def test_siglip_logit_bias_trains_on_cuda(phantom_dir: Path, tmp_path: Path) -> None:
    from medcap.train.step import prepare, train_step

    run, cases, groups = _steady_state(phantom_dir, str(siglip_config(tmp_path)))
    before = float(run.core.logit_bias.detach())
    for step in range(3):
        loss = train_step(run, prepare(run, cases, next(groups), step))
    assert math.isfinite(float(loss))
    assert float(run.core.logit_bias.detach()) != before
