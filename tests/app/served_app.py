"""Run `medcap app` as a real server for end-to-end tests (always stopped afterwards)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    """Poll Streamlit's health endpoint until it answers "ok" (fail if the server died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"medcap app exited early with code {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply,
        ):
            if reply.read() == b"ok":
                return
        time.sleep(0.3)
    raise AssertionError(f"no healthy server at {url} after {timeout_s} s")


@contextlib.contextmanager
def served(index_dir: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`medcap app` in its own process group; stopped with Ctrl-C (SIGINT), always."""
    cmd = [sys.executable, "-m", "medcap", "app", "--index", str(index_dir),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # medcap stops the streamlit server's process group
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the server left behind
