"""Shared data fixtures (session-scoped artifacts built once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcap.data import build_phantoms, open_dataset
from medcap.data.dataset import Dataset

__all__ = ["PHANTOM_N", "PHANTOM_SEED", "PHANTOM_SIZE", "phantom_dataset", "phantom_dir"]

PHANTOM_N = 200  # 160 train / 20 valid / 20 test
PHANTOM_SEED = 0
PHANTOM_SIZE = 64  # pixels, the medcap-tiny input size


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom dataset in layout (a): `data/{split}-*.parquet`, 200 cases at 64 px."""
    return build_phantoms(
        tmp_path_factory.mktemp("phantoms"), n=PHANTOM_N, seed=PHANTOM_SEED, image_size=PHANTOM_SIZE
    )


@pytest.fixture(scope="session")
def phantom_dataset(phantom_dir: Path) -> Dataset:
    """`open_dataset(phantom_dir)`."""
    return open_dataset(phantom_dir)
