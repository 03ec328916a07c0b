"""`--engine ray` on a real two-node Ray cluster on loopback: the same index and the same
caption rows as one process, through the loss of a worker node and of the driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.index.shards import shard_files
from tests.dist.conftest import (
    BUILD_ARGS,
    RAY_SETTINGS,
    SHARDS,
    assert_same_index,
    driver,
    finish,
    rows,
    short_tmp,
)
from tests.dist.loopback import LoopbackCluster, ProcessWatch, wait_for

pytestmark = pytest.mark.slow


def _build_args(phantom_dir: Path, out: Path, *extra: str) -> list[str]:
    return [*RAY_SETTINGS, "index", "build", "--data", str(phantom_dir), "--out", str(out),
            *BUILD_ARGS, "--engine", "ray", *extra]  # fmt: skip


def _complete_shards(out: Path) -> list[Path]:
    return sorted((out.with_name(out.name + ".partial") / "emb").glob("shard_*.json"))


def _wait_for_first_shard(process: subprocess.Popen[bytes], out: Path) -> None:
    def started() -> bool:
        assert process.poll() is None, "the build ended before its first shard"
        return bool(_complete_shards(out))

    wait_for("the first shard", started, timeout_s=240)


def test_build_on_two_nodes_equals_the_one_process_build(
    two_nodes: LoopbackCluster, phantom_dir: Path, local_index: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    args = _build_args(phantom_dir, out, "--ray-address", two_nodes.address, "--actors", "2")
    log = finish(driver(args, two_nodes.env(), tmp_path / "driver.log"), tmp_path / "driver.log")
    assert "indexed 160 cases" in log and "on Ray" in log
    # one actor per node, the driver joined on loopback, progress with rate and ETA
    assert "2 node(s)" in log and "127.0.0.2 cpu" in log and "127.0.0.3 cpu" in log
    assert "cases/s" in log and "ETA" in log
    assert_same_index(out, local_index)


def test_build_survives_losing_a_worker_node(
    two_nodes: LoopbackCluster, phantom_dir: Path, local_index: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    args = _build_args(phantom_dir, out, "--ray-address", two_nodes.address, "--actors", "2")
    log = tmp_path / "driver.log"
    process = driver(args, two_nodes.env(), log)
    try:
        _wait_for_first_shard(process, out)
        two_nodes.kill_raylet(two_nodes.nodes[-1])
        done_at_kill = len(_complete_shards(out))
        text = finish(process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert done_at_kill < SHARDS, "the node died after the build had finished: nothing tested"
    assert "127.0.0.3 cpu" in text  # an actor was on the node that died
    wait_for("the worker node to exit", lambda: two_nodes.nodes[-1].process.poll() is not None)
    assert_same_index(out, local_index)


def test_build_resumes_after_the_driver_is_killed(
    two_nodes: LoopbackCluster, phantom_dir: Path, local_index: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    args = _build_args(phantom_dir, out, "--ray-address", two_nodes.address, "--actors", "2")
    log = tmp_path / "driver.log"
    process = driver(args, two_nodes.env(), log)
    try:
        _wait_for_first_shard(process, out)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    complete = _complete_shards(out)
    names = [s.stem.removeprefix("shard_") for s in complete]
    kept = {p: p.stat() for name in names for p in shard_files(complete[0].parent, name)}
    assert kept and not out.exists()
    finish(driver([*args, "--resume"], two_nodes.env(), log), log)
    for path, before in kept.items():  # shards written before the crash were not redone
        moved = out / "emb" / path.name
        assert (moved.stat().st_ino, moved.stat().st_mtime_ns) == (
            before.st_ino,
            before.st_mtime_ns,
        )
    assert_same_index(out, local_index)


def test_caption_run_on_two_nodes_writes_the_one_process_rows_through_a_node_loss(
    two_nodes: LoopbackCluster, phantom_dir: Path, local_index: Path, tmp_path: Path
) -> None:
    # k=20 makes the consensus backend slow enough (pairwise CIDEr-D) that the run is
    # still going when the node dies.
    common = ["caption", "--index", str(local_index), "--data", str(phantom_dir), "--split",
              "train", "--backend", "consensus", "--k", "20", "--batch-size", "2",
              "--checkpoint-every", "1"]  # fmt: skip
    single = tmp_path / "single.csv"
    assert main([*common, "--out", str(single)]) == 0
    out = tmp_path / "ray.csv"
    args = [*RAY_SETTINGS, *common, "--out", str(out), "--engine", "ray",
            "--ray-address", two_nodes.address, "--actors", "2"]  # fmt: skip
    log = tmp_path / "driver.log"
    process = driver(args, two_nodes.env(), log)
    try:

        def some_rows() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            return out.exists() and out.read_text().count("\n") > 3

        wait_for("the first caption rows", some_rows, timeout_s=240)
        two_nodes.kill_raylet(two_nodes.nodes[-1])
        rows_at_kill = out.read_text().count("\n") - 1
        finish(process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert rows_at_kill < 160, "the node died after the run had finished: nothing tested"
    expected = rows(single)
    assert len(expected) == 160 and rows(out) == expected  # each image once, same captions
    assert out.read_text().count("\n") == 161
    info = (tmp_path / "ray.run.json").read_text()
    assert '"engine": "ray"' in info


def test_engine_ray_without_an_address_starts_and_stops_its_own_ray(
    phantom_dir: Path, local_index: Path, tmp_path: Path
) -> None:
    temp = short_tmp()
    out = tmp_path / "index"
    args = ["--set", "dist.local_num_cpus=2", "--set", f"dist.temp_dir={temp}",
            *_build_args(phantom_dir, out)]  # fmt: skip
    watch = ProcessWatch()
    log = tmp_path / "driver.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        text = finish(driver(args, env, log), log, watch)
        wait_for("every process of the local Ray to exit", lambda: not watch.alive(), 30)
    finally:
        watch.kill()  # what a failed run left behind
        shutil.rmtree(temp, ignore_errors=True)
    assert "ray: local, 1 node(s)" in text
    assert "raylet" in {name for _, name in watch.seen.values()}, "no local Ray was started"
    assert_same_index(out, local_index)
