"""A real multi-node Ray cluster on this machine, on loopback addresses, for tests.

The head runs on 127.0.0.2 and each worker node on the next address (127.0.0.3, ...):
Ray rewrites 127.0.0.1 into the machine's outward address, other loopback addresses it
keeps. Each node is `ray start --block` in its own process group with its own short
session folder, so the cluster is stopped by killing exactly its own processes (never
`ray stop`, which stops every Ray on the machine). Ray's worker processes leave that
process group, so every descendant of a node is recorded before the node is stopped, and
`leftovers()` names any recorded process still alive.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import medcap

RAY = str(Path(sys.executable).with_name("ray"))
SRC = str(Path(medcap.__file__).resolve().parents[1])
# Declare a node dead after ~2 s of missed health checks, not Ray's default ~30 s.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Poll `check` until it holds; fail naming `what` after a generous timeout."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, command) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie holds no resources; its parent reaps it
    return int(fields[1]), int(fields[19]), name


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command) of every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            info[int(entry.name)] = (stat[1], stat[2])
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = info[child]
            todo.append(child)
    return found


class ProcessWatch:
    """Records a process tree as it grows, to check later that all of it is gone."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, str]] = {}

    def record(self, root: int) -> None:
        if (stat := _stat(root)) is not None:
            self.seen[root] = (stat[1], stat[2])
        self.seen.update(descendants(root))

    def alive(self) -> list[str]:
        """Recorded processes still running (same pid and start time)."""
        out = []
        for pid, (started, name) in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started:
                out.append(f"{pid} {name}")
        return out

    def kill(self) -> None:
        for pid, (started, _) in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@dataclass
class Node:
    """One `ray start --block` process (a head or a worker node)."""

    ip: str
    process: subprocess.Popen[bytes]
    temp_dir: str
    log: Path

    def raylet(self) -> int | None:
        for pid, (_, name) in descendants(self.process.pid).items():
            if name == "raylet":
                return pid
        return None


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


@dataclass
class LoopbackCluster:
    """Head on 127.0.0.2 plus worker nodes; `stop()` ends every process it started."""

    root: Path
    head_cpus: int = 3
    worker_cpus: int = 2
    memory_mb: int = 2000
    store_mb: int = 150
    nodes: list[Node] = field(default_factory=list)
    watch: ProcessWatch = field(default_factory=ProcessWatch)
    address: str = ""
    # token authentication, with a token of this cluster's own (not ~/.ray/auth_token)
    auth: dict[str, str] = field(
        default_factory=lambda: {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    )

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, **FAST_FAILURE_DETECTION, "PYTHONPATH": path,
                "RAY_USAGE_STATS_ENABLED": "0", **self.auth}  # fmt: skip

    def _start(self, ip: str, args: list[str]) -> Node:
        temp_dir = tempfile.mkdtemp(prefix="mcr", dir="/tmp")  # socket paths stay short
        log = self.root / f"node-{ip}.log"
        common = [f"--node-ip-address={ip}", f"--memory={self.memory_mb * 1024 * 1024}",
                  f"--object-store-memory={self.store_mb * 1024 * 1024}",
                  "--disable-usage-stats", f"--temp-dir={temp_dir}"]  # fmt: skip
        process = subprocess.Popen(
            [RAY, "start", "--block", *common, *args],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env(),
        )
        node = Node(ip, process, temp_dir, log)
        self.nodes.append(node)
        wait_for(f"ray node {ip} (log {log})", lambda: self._started(node))
        self.watch.record(process.pid)
        return node

    def _started(self, node: Node) -> bool:
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start for {node.ip} exited: {node.log.read_text()[-2000:]}")
        return b"Ray runtime started" in node.log.read_bytes() and node.raylet() is not None

    def start(self) -> LoopbackCluster:
        ip = "127.0.0.2"
        head = self._start(ip, ["--head", "--port=0", "--num-cpus", str(self.head_cpus),
                                f"--ray-client-server-port={free_port(ip)}",
                                "--include-dashboard=false", "--no-monitor"])  # fmt: skip
        current = Path(head.temp_dir) / "ray_current_cluster"
        wait_for("the head's address file", current.exists)
        self.address = current.read_text().strip()
        self.add_worker()
        return self

    def add_worker(self) -> Node:
        ip = f"127.0.0.{len(self.nodes) + 2}"
        return self._start(ip, [f"--address={self.address}", "--num-cpus", str(self.worker_cpus)])

    def kill_raylet(self, node: Node) -> int:
        """SIGKILL a node's raylet (its workers die with it); returns the raylet's pid."""
        self.watch.record(node.process.pid)  # its workers, before they are orphaned
        pid = node.raylet()
        assert pid is not None, f"node {node.ip} has no raylet"
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> list[str]:
        """Stop every node (TERM, then KILL), wait, and return processes left (none, hopefully)."""
        for node in self.nodes:
            self.watch.record(node.process.pid)
        for node in self.nodes:
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # `ray start --block` rarely exits on TERM alone
        while any(n.process.poll() is None for n in self.nodes) and time.monotonic() < deadline:
            time.sleep(0.1)
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait()
        self.watch.kill()
        with contextlib.suppress(TimeoutError):
            wait_for("the cluster's processes to exit", lambda: not self.watch.alive(), 30)
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        return self.watch.alive()
