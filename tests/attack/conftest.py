"""Attack-test fixtures: a checkpoint of the tiny encoder and a small index built with it."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from tests.attack.helpers import write_tiny_checkpoint

ATTACK_CASES = 40  # train phantoms indexed: enough neighbours, quick to embed


def build_small_index(
    dataset: Any, checkpoint: Path, out: Path, *, cases: int = ATTACK_CASES
) -> Path:
    """Index the first `cases` train phantoms with `checkpoint`; cache its image tower."""
    from medcap.config import DEFAULTS, replace_set
    from medcap.encoder import load_encoder
    from medcap.encoder.image_tower import save_image_tower
    from medcap.index import build_index

    encoder = load_encoder(str(checkpoint), device="cpu")
    cfg = replace_set(DEFAULTS.index, shard_size=16, thumbnail_size=0)
    build_index(
        islice(dataset.records("train"), cases),
        encoder,
        out,
        cfg,
        dataset_fingerprint=dataset.fingerprint(),
        dataset_name=dataset.name,
        split="train",
    )
    save_image_tower(encoder)
    return out


@pytest.fixture(scope="session")
def attack_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt (+ best.json) of a randomly initialised medcap-tiny (seed 7)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("attack_ckpt") / "best.pt", seed=7)


@pytest.fixture(scope="session")
def attack_index(
    phantom_dataset: Any, attack_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """40 train phantoms indexed with `attack_checkpoint` (its image tower cached)."""
    return build_small_index(
        phantom_dataset, attack_checkpoint, tmp_path_factory.mktemp("attack_index") / "index"
    )


@pytest.fixture(scope="session")
def query_png(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-split phantom written as a PNG file."""
    record = next(iter(phantom_dataset.records("test")))
    path = tmp_path_factory.mktemp("attack_queries") / f"{record.image_id}.png"
    path.write_bytes(record.image.data)
    return path
