"""Shared encoder fixtures (session-scoped artifacts built once per test run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

__all__ = ["tiny_encoder", "trained_checkpoint", "trained_encoder"]


def trained_config() -> Any:
    from medcap.config import DEFAULTS

    # About 15-20 s on 2 CPU cores for the ~200-case phantom_dir; enough for retrieval far
    # above chance, so retrieval, index and app tests see meaningful neighbours.
    return dataclasses.replace(
        DEFAULTS.train,
        epochs=30,
        batch_size=32,
        lr=2e-3,
        warmup_steps=10,
        checkpoint_every_steps=1000,
        log_every_steps=5,
        device="cpu",
        seed=0,
        num_threads=1,  # 2 threads on 2 cores shared with other test processes spin and crawl
    )


@pytest.fixture(scope="session")
def tiny_encoder() -> Any:
    """Random-init medcap-tiny (seeded: the same weights in every session), on CPU."""
    from medcap.encoder import load_encoder

    return load_encoder("medcap-tiny", device="cpu")


@pytest.fixture(scope="session")
def trained_checkpoint(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of medcap-tiny trained briefly on `phantom_dir` (load with load_encoder)."""
    from medcap.train.loop import train_encoder

    out = tmp_path_factory.mktemp("trained_encoder") / "run"
    result = train_encoder(phantom_dir, out, model="medcap-tiny", cfg=trained_config())
    return result.best_checkpoint


@pytest.fixture(scope="session")
def trained_encoder(trained_checkpoint: Path) -> Any:
    """The trained checkpoint loaded on CPU."""
    from medcap.encoder import load_encoder

    return load_encoder(str(trained_checkpoint), device="cpu")
