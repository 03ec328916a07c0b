"""Fixtures of the Ray tests: a loopback cluster, reference artifacts built without Ray,
and a helper that runs `medcap` as its own process (the driver), as a user would."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from medcap.cli import main
from tests.dist.loopback import LoopbackCluster, ProcessWatch

if importlib.util.find_spec("ray") is None:
    collect_ignore_glob = ["test_*.py"]  # medcap[dist] is not installed

# Small shards and batches: the 160 train phantoms become 40 shards (one 4-case piece
# each), so a build is still running when a test kills a node after the first shard.
BUILD_ARGS = ["--model", "medcap-tiny", "--shard-size", "4", "--batch-size", "4",
              "--thumbnail-size", "32"]  # fmt: skip
RAY_SETTINGS = ["--set", "dist.batches_per_task=1", "--set", "dist.progress_every_s=0",
                "--set", "dist.stall_timeout_s=240"]  # fmt: skip
SHARDS = 40  # 160 / 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    """A head node (3 CPUs) and a worker node (2 CPUs) on loopback; all of it stopped after."""
    ray_cluster = LoopbackCluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        yield ray_cluster.start()
    finally:
        left = ray_cluster.stop()
        assert left == [], f"Ray processes of the test cluster still running: {left}"


@pytest.fixture
def two_nodes(cluster: LoopbackCluster) -> LoopbackCluster:
    """The cluster with a live worker node (a test before may have killed one)."""
    if cluster.nodes[-1].process.poll() is not None:
        cluster.add_worker()
    return cluster


@pytest.fixture(scope="module")
def local_index(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train phantoms indexed by a one-process build (the reference)."""
    out = tmp_path_factory.mktemp("local") / "index"
    assert main(["index", "build", "--data", str(phantom_dir), "--out", str(out), *BUILD_ARGS]) == 0
    return out


def short_tmp() -> Path:
    """A short folder under /tmp (a local Ray's Unix socket paths must stay short)."""
    return Path(tempfile.mkdtemp(prefix="mct", dir="/tmp"))


def driver(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m medcap ARGS` in its own session, output to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "medcap", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[bytes], log: Path, watch: ProcessWatch | None = None) -> str:
    """Wait for a driver (recording its process tree) and return its output; fail on rc != 0."""
    while True:
        if watch is not None:
            watch.record(process.pid)
        try:
            process.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-3000:]
    return text


def _vectors(index: Path, shards: list[dict[str, Any]], target: str) -> Any:
    parts = [np.load(index / "emb" / f"{target}_{s['name']}.npy") for s in shards]
    return np.concatenate(parts).astype(np.float32)


def assert_same_index(built: Path, reference: Path) -> None:
    """Same ids in the same order, vectors within 1e-3 cosine, and the same manifest except
    its timestamps and engine (files, checksums, shards and counts included)."""
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (built, reference))
    assert (a.pop("engine"), b.pop("engine")) == ("ray", "local")
    for m in (a, b):
        m.pop("created_at")
        for source in m["sources"]:
            source.pop("added_at")
    assert a == b
    ids = [
        pq.read_table(d / "items.parquet").column("image_id").to_pylist()
        for d in (built, reference)
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 160
    for target in ("image", "caption"):
        va, vb = (_vectors(d, a["shards"], target) for d in (built, reference))
        cosine = (va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        assert cosine.min() > 1 - 1e-3


def rows(path: Path) -> set[tuple[Any, ...]]:
    """A results CSV's rows without the columns that measure time."""
    import csv

    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        skip = {"timestamp", "processing_time_sec"}
        return {tuple(v for k, v in row.items() if k not in skip) for row in reader}
