"""Start-up, loading, the token rule, timeouts and SIGTERM, each on its own real server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.serve.served import Reply, Server, serving, wait_for

TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.slow  # each test starts its own server


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medcap", *args], capture_output=True, text=True, timeout=timeout
    )


def _one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_non_loopback_host_needs_a_token(serve_index_dir: Path) -> None:
    result = _cli("serve", "--index", str(serve_index_dir), "--host", "0.0.0.0")
    _one_line_error(result, "--host 0.0.0.0 makes the service reachable")
    assert "--token" in result.stderr and "--insecure" in result.stderr


def test_insecure_and_token_pass_the_host_check(serve_index_dir: Path, tmp_path: Path) -> None:
    """They get past the host rule (and fail later, at the missing index): nothing binds."""
    missing = tmp_path / "missing"
    for extra in (["--insecure"], ["--token", TOKEN]):
        result = _cli("serve", "--index", str(missing), "--host", "0.0.0.0", *extra)
        _one_line_error(result, f"index directory {missing} does not exist")


def test_short_token_and_several_workers_are_refused(serve_index_dir: Path) -> None:
    _one_line_error(_cli("serve", "--index", str(serve_index_dir), "--token", "abc"), "at least 16")
    result = _cli("serve", "--index", str(serve_index_dir), "--workers", "2")
    _one_line_error(result, "--workers 2: medcap serve runs one process")


def test_busy_port_is_one_line(serve_index_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _cli("serve", "--index", str(serve_index_dir), "--port", str(port))
    _one_line_error(result, f"cannot serve on 127.0.0.1:{port}")


def test_token_guards_everything_but_the_probes(
    serve_index_dir: Path, tmp_path: Path, query_images: list[Path]
) -> None:
    png = query_images[0].read_bytes()
    with serving(serve_index_dir, tmp_path / "token.log", env={"MEDCAP_TOKEN": TOKEN}) as server:
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert server.get(path).status == 200
        wrong = {"authorization": "Bearer not-the-token-0123456789"}
        for headers in ({}, wrong, {"authorization": TOKEN}, {"authorization": f"Basic {TOKEN}"}):
            for reply in (
                server.get("/v1/index", headers=headers),
                server.get("/metrics", headers=headers),
                server.search_image(png, headers=headers),
                server.post_json("/v1/search", {"text": "chest"}, headers=headers),
            ):
                assert reply.status == 401 and "bearer token" in reply.error
                assert reply.headers["www-authenticate"] == "Bearer"
        assert server.get("/v1/index", headers=AUTH).status == 200
        assert server.search_image(png, headers=AUTH).status == 200
        metrics = server.metrics(headers=AUTH)
        assert 'endpoint="/v1/search",method="POST",status="401"' in metrics
        assert TOKEN not in server.log_text()


def test_damaged_index_is_not_ready_but_alive(
    serve_index_dir: Path, tmp_path: Path, query_images: list[Path]
) -> None:
    damaged = tmp_path / "index"
    shutil.copytree(serve_index_dir, damaged)
    items = damaged / "items.parquet"
    items.write_bytes(items.read_bytes()[:-100])
    with serving(damaged, tmp_path / "damaged.log", ready=False) as server:
        wait_for(lambda: server.get("/readyz").json()["status"] == "failed", server, 120, "failed")
        reply = server.get("/readyz")
        assert reply.status == 503 and "items.parquet" in reply.error
        assert server.get("/healthz").status == 200
        refused = server.search_image(query_images[0].read_bytes())
        assert refused.status == 503 and "could not be loaded" in refused.error
        assert server.get("/v1/index").status == 503
        assert "error: the index could not be loaded" in server.log_text()


def test_slow_request_is_cut_with_504_and_a_full_queue_is_503(
    serve_index_dir: Path, tmp_path: Path, query_images: list[Path]
) -> None:
    """A batch that waits 60 s for company outlasts a 2 s request timeout; while it waits,
    the queue (one query at most here) refuses the next query at once."""
    settings = ("serve.batch_max_wait_ms=60000", "serve.batch_max_size=64",
                "serve.request_timeout_s=2", "serve.queue_max=1")  # fmt: skip
    png = query_images[0].read_bytes()
    replies: list[Reply] = []
    with serving(serve_index_dir, tmp_path / "timeout.log", settings=settings) as server:
        first = threading.Thread(target=lambda: replies.append(server.search_image(png)))
        first.start()
        try:
            wait_for(lambda: _queued(server) >= 1, server, 60, "holding a query")
            refused = server.search_image(png)
            assert refused.status == 503 and "overloaded" in refused.error
        finally:
            first.join(timeout=60)
        assert replies[0].status == 504 and "longer than 2 s" in replies[0].error
        assert server.get("/healthz").status == 200
        metrics = server.metrics()
        assert 'endpoint="/v1/search",method="POST",status="504"' in metrics
        assert 'endpoint="/v1/search",method="POST",status="503"' in metrics


def test_sigterm_drains_the_request_in_flight(
    serve_index_dir: Path, tmp_path: Path, query_images: list[Path], library_index: Any
) -> None:
    """SIGTERM while a search waits in its batch: it still gets its hits, then the server
    exits and the port is free."""
    settings = ("serve.batch_max_wait_ms=3000", "serve.batch_max_size=64")
    path = query_images[1]
    replies: list[Reply] = []
    with serving(serve_index_dir, tmp_path / "sigterm.log", settings=settings) as server:
        client = threading.Thread(
            target=lambda: replies.append(server.search_image(path.read_bytes(), "?k=3"))
        )
        client.start()
        try:
            wait_for(lambda: _queued(server) >= 1, server, 60, "holding a query")
            server.proc.terminate()
            server.proc.wait(timeout=60)
        finally:
            client.join(timeout=60)
        assert len(replies) == 1 and replies[0].status == 200, replies
        expected = library_index.search(str(path), k=3)[0]
        assert [h["image_id"] for h in replies[0].json()["hits"]] == [h.image_id for h in expected]
        assert server.proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after draining
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", server.port))
        with socket.socket() as sock:  # free for the next server (as medcap serve binds)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", server.port))
        assert "POST /v1/search?k 200" in server.log_text()


def _queued(server: Server) -> float:
    for line in server.metrics().splitlines():
        if line.startswith('medcap_queries_queued{kind="image"}'):
            return float(line.split()[-1])
    return 0.0


def test_serve_help_names_the_defaults() -> None:
    result = _cli("serve", "--help")
    assert result.returncode == 0
    for flag in ("--index", "--port", "--host", "--token", "--insecure", "--workers", "--backend"):
        assert flag in result.stdout
    assert "8600" in result.stdout and "MEDCAP_TOKEN" in result.stdout
