"""Test environment: offline, 2 threads, seeded, loopback-only sockets.

CUDA stays visible unless `MEDCAP_TEST_CPU_ONLY=1` (which `make test` sets, so the default
suite is the same on every machine); `gpu`-marked tests run where CUDA is visible and are
skipped elsewhere: `pytest -m gpu` (or `make gpu-check`) on a GPU machine.
"""

from __future__ import annotations

import os
import tempfile

# Before torch, transformers or datasets are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
if os.environ.get("MEDCAP_TEST_CPU_ONLY", "") not in ("", "0"):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["MPLBACKEND"] = "Agg"
# medcap's cache (traced image towers) goes to a fresh folder, never ~/.cache.
os.environ["MEDCAP_CACHE_DIR"] = tempfile.mkdtemp(prefix="medcap-test-cache-")

import random  # noqa: E402
import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in _LOOPBACK and self.family != socket.AF_UNIX:
        raise ConnectionRefusedError(f"tests may not connect to {host!r} (loopback only)")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _offline_and_seeded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    random.seed(0)
    np.random.seed(0)
    yield


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(2)
        torch.manual_seed(0)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(2)
    except ImportError:
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    hidden = (
        " (hidden by MEDCAP_TEST_CPU_ONLY)" if os.environ.get("CUDA_VISIBLE_DEVICES") == "" else ""
    )
    skip_gpu = pytest.mark.skip(reason=f"needs CUDA{hidden}")
    skip_real = pytest.mark.skip(reason="needs real local checkpoints (MEDCAP_REAL_WEIGHTS=1)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "real_weights" in item.keywords and not os.environ.get("MEDCAP_REAL_WEIGHTS"):
            item.add_marker(skip_real)


# Shared session fixtures live in one module per stage, each owned by that stage's tests.
from tests.fixtures_data import *  # noqa: E402,F403
from tests.fixtures_encoder import *  # noqa: E402,F403
from tests.fixtures_index import *  # noqa: E402,F403
from tests.fixtures_snapshots import *  # noqa: E402,F403
