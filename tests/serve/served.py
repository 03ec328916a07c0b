"""Run `medcap serve` as a real server for tests (always stopped afterwards) and speak
HTTP to it with the standard library."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.app.served_app import free_port

READY_TIMEOUT_S = 240  # torch import + index and encoder load on a busy 2-core machine


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        """The one-line `error` of a refusal (asserted to be one line)."""
        message = self.json()["error"]
        assert isinstance(message, str) and "\n" not in message and message.strip()
        return message


def request(
    url: str,
    method: str = "GET",
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    """Send one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return Reply(reply.status, dict(reply.headers), reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def multipart(data: bytes, filename: str = "query.png") -> tuple[bytes, dict[str, str]]:
    """A multipart body with `data` as file field `image`, and its content type header."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


@dataclass
class Server:
    """A running `medcap serve` process."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **options: Any) -> Reply:
        return request(self.url + path, **options)

    def search_image(
        self,
        data: bytes,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        body, content = multipart(data)
        return request(
            f"{self.url}/v1/search{query}",
            "POST",
            body=body,
            headers={**content, **(headers or {})},
            timeout=timeout,
        )

    def post_json(self, path: str, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        body = json.dumps(payload).encode()
        return request(
            self.url + path, "POST", body=body,
            headers={"content-type": "application/json", **(headers or {})},
        )  # fmt: skip

    def metrics(self, headers: Mapping[str, str] | None = None) -> str:
        reply = self.get("/metrics", headers=headers)
        assert reply.status == 200, reply.body
        return reply.body.decode()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz until 200 (fail at once if the process died or could not load)."""

        def ready() -> bool:
            reply = self.get("/readyz", timeout=5)
            assert b"could not be loaded" not in reply.body, reply.body.decode(errors="replace")
            return reply.status == 200

        wait_for(ready, self, timeout_s, "ready")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(check: Any, server: Server, timeout_s: float, what: str) -> None:
    """Poll `check()` until true; OSErrors (not listening yet) count as not yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"medcap serve exited with {server.proc.returncode}:\n{server.log_text()}"
            )
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"server not {what} after {timeout_s} s:\n{server.log_text()}")


def serve_command(
    index_dir: Path, port: int, args: Sequence[str] = (), settings: Sequence[str] = ()
) -> list[str]:
    """`python -m medcap [--set ...] serve --index DIR --port PORT ARGS`."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return [sys.executable, "-m", "medcap", *sets, "serve", "--index", str(index_dir),
            "--port", str(port), *args]  # fmt: skip


@contextlib.contextmanager
def serving(
    index_dir: Path,
    log: Path,
    *args: str,
    settings: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready: bool = True,
) -> Iterator[Server]:
    """`medcap serve` on a free 127.0.0.1 port in its own process group, stopped (SIGTERM,
    then SIGKILL of the group) even when the test fails."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            serve_command(index_dir, port, args, settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        if ready:
            server.wait_ready()
        else:
            wait_for(lambda: server.get("/healthz", timeout=5).status == 200, server, 120, "up")
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, wait, then SIGKILL whatever is left of the process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
