"""Item 4: SIGTERM, SIGINT and SIGHUP stop `medcap app` and its server, however it started."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.served_app import free_port, wait_healthy

pytestmark = pytest.mark.slow  # each test starts a real Streamlit server


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _app_command(index_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "medcap", "app", "--index", str(index_dir),
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


@contextlib.contextmanager
def _cleanup(*pids: int) -> Iterator[None]:
    """Whatever happens in the test, kill what it started (by process group, then pid)."""
    try:
        yield
    finally:
        for pid in pids:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)


def _assert_stopped(port: int, server_pids: list[int]) -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
    assert [p for p in server_pids if _alive(p)] == [], "the Streamlit server outlived medcap"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_item04_each_stop_signal_ends_the_app_and_frees_the_port(
    app_index_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            _app_command(app_index_dir, port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    with _cleanup(proc.pid):
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        server = _children(proc.pid)
        assert server, "no server child found"
        server += [grandchild for pid in server for grandchild in _children(pid)]
        proc.send_signal(sig)  # to medcap alone, as `kill PID` does
        assert proc.wait(timeout=60) == 128 + sig, (tmp_path / "server.log").read_text()
        _assert_stopped(port, server)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_item04_the_server_ends_even_when_medcap_is_killed_outright(
    app_index_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        _app_command(app_index_dir, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    with _cleanup(proc.pid):
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        server = _children(proc.pid)
        assert server
        proc.kill()  # SIGKILL: no handler of medcap runs
        proc.wait(timeout=30)
        for pid in server:  # the kernel sent the server SIGTERM; it shuts down on its own
            with _cleanup(pid):
                _wait_gone(pid, timeout_s=60)
        _assert_stopped(port, server)


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after {timeout_s} s"
        time.sleep(0.2)


def test_item04_ctrl_c_stops_a_background_job_that_started_with_sigint_ignored(
    app_index_dir: Path, tmp_path: Path
) -> None:
    probe = subprocess.run(
        ["sh", "-c", "grep SigIgn /proc/self/status & wait"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ignored = int(probe.stdout.split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1)), "this shell's jobs do not start ignoring SIGINT"
    port = free_port()
    command = shlex.join(_app_command(app_index_dir, port))
    # A non-interactive shell starts `&` jobs with SIGINT ignored (what `make test &` does).
    shell = subprocess.Popen(
        ["sh", "-c", f"{command} > {tmp_path / 'server.log'} 2>&1 & echo $!; wait $!"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    with _cleanup(shell.pid):
        assert shell.stdout is not None
        app_pid = int(shell.stdout.readline())
        wait_healthy(f"http://127.0.0.1:{port}", shell)
        server = _children(app_pid)
        assert server
        os.kill(app_pid, signal.SIGINT)
        shell.wait(timeout=60)  # the shell waits for the job: it ended
        assert not _alive(app_pid)
        _assert_stopped(port, server)
