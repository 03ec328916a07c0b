"""Shared index fixtures (session-scoped artifacts built once per test run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["PHANTOM_INDEX_SHARD_SIZE", "phantom_index_dir", "phantom_retriever"]

PHANTOM_INDEX_SHARD_SIZE = 64  # several shards even for the 160 train phantoms


@pytest.fixture(scope="session")
def phantom_index_dir(
    phantom_dataset: Any, trained_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The train split of `phantom_dir` indexed with the `trained_checkpoint` encoder."""
    from medcap.config import DEFAULTS, replace_set
    from medcap.index import build_index
    from medcap.retrieval.thumbnails import thumbnailer

    cfg = replace_set(DEFAULTS.index, shard_size=PHANTOM_INDEX_SHARD_SIZE, thumbnail_size=32)
    out = tmp_path_factory.mktemp("phantom_index") / "index"
    build_index(
        phantom_dataset.records("train"),
        trained_encoder,
        out,
        cfg,
        dataset_fingerprint=phantom_dataset.fingerprint(),
        dataset_name=phantom_dataset.name,
        split="train",
        make_thumbnail=thumbnailer(cfg.thumbnail_size),
    )
    return out


@pytest.fixture(scope="session")
def phantom_retriever(phantom_index_dir: Path) -> Any:
    """`open_retriever(phantom_index_dir)` on CPU (loads the trained checkpoint)."""
    from medcap.retrieval.retriever import open_retriever

    return open_retriever(phantom_index_dir, device="cpu")
