"""Attack-test fixtures: a checkpoint of the tiny encoder, a small index built with it, a
query image, a compact huge PNG, and the app tests' fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import app_index_dir, make_app  # noqa: F401 - the app tests' fixtures
from tests.attack.helpers import build_small_index, write_blank_png, write_tiny_checkpoint


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


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 20000 x 20000 PNG (400 Mpx) of a few hundred KB."""
    return write_blank_png(tmp_path_factory.mktemp("huge") / "huge.png", 20_000, 20_000)
