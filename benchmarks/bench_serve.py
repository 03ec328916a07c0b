"""Load test of `medcap serve` on loopback: requests/s, latency percentiles, errors, memory.

Two `medcap serve` processes over a --n case phantom index (random-init medcap-tiny, built
once in --work and reused): one with micro-batching (the defaults), one without it
(serve.batch_max_size=1: one encoder call per query). They answer image uploads (held-out
PNG phantoms) and text queries (their captions) from --concurrency clients. Both run at
once; each phase runs against one and then at once against the other, so that both meet
the same load from other jobs. A phase lasts --seconds after a warm-up, or until
--max-requests. The load generator is one asyncio process speaking HTTP/1.1 over raw
keep-alive sockets (prepared request bytes, responses checked by status), so it takes as
little of the 2 cores as it can. Reported: its CPU and the server's, requests per second
of server CPU (which other jobs on the machine do not change), and the server's RSS,
sampled every 0.1 s.
Goals: image p50 <= 15 ms at concurrency 1; >= 300 image queries/s at concurrency 32 with
micro-batching and >= 2x the rate without; zero errors; memory flat.

    .venv/bin/python benchmarks/bench_serve.py [--n 10000] [--seconds 8] [--work DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "serve.json"
GOALS = {"image_p50_ms_c1": 15.0, "image_rps_c32": 300.0, "batching_speedup_c32": 2.0}
MODES = {"batched": (), "unbatched": ("serve.batch_max_size=1",)}
TICK_S = os.sysconf("SC_CLK_TCK")


def _build(work: Path, n: int) -> tuple[Path, Path]:
    """Phantoms with `n` training cases, indexed with random-init medcap-tiny (reused)."""
    import medcap
    from medcap.config import DEFAULTS
    from medcap.data import build_phantoms

    data, index_dir = work / "phantoms", work / "index"
    if (index_dir / "manifest.json").exists():
        return data, index_dir
    total = math.ceil(n / DEFAULTS.data.phantom_split_fractions[0])
    start = time.perf_counter()
    build_phantoms(data, n=total, seed=0, image_size=64)
    medcap.build_index(data, index_dir, model="medcap-tiny", device="cpu")
    print(f"built {n} phantom cases and their index in {time.perf_counter() - start:.0f} s")
    return data, index_dir


def _queries(data: Path, count: int) -> list[tuple[bytes, str]]:
    """(PNG bytes, caption) of held-out test phantoms."""
    from medcap.data import open_dataset
    from medcap.data.images import load_image

    out = []
    for record in open_dataset(data).records("test"):
        buffer = io.BytesIO()
        load_image(record.image).save(buffer, format="PNG")
        out.append((buffer.getvalue(), record.caption))
        if len(out) == count:
            break
    return out


def _requests(port: int, kind: str, queries: list[tuple[bytes, str]]) -> list[bytes]:
    """Whole HTTP/1.1 requests (keep-alive), prepared once so the client spends no CPU on them."""
    out = []
    for png, caption in queries:
        if kind == "image":
            boundary = uuid.uuid4().hex
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                    f'filename="q.png"\r\nContent-Type: image/png\r\n\r\n'
                ).encode()
                + png
                + f"\r\n--{boundary}--\r\n".encode()
            )
            content_type = f"multipart/form-data; boundary={boundary}"
        else:
            body = json.dumps({"text": caption}).encode()
            content_type = "application/json"
        head = (
            f"POST /v1/search?k=5 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """Send one request, read its whole response; the status code."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _load(port: int, requests: list[bytes], concurrency: int, warmup_s: float,
                seconds: float, max_requests: int) -> dict[str, Any]:  # fmt: skip
    """`concurrency` connections, each sending requests back to back; stats of the timed part."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + warmup_s + seconds
    timed_from = time.perf_counter() + warmup_s
    counter = iter(range(10**9))

    async def client(worker: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at and len(latencies) < max_requests:
                raw = requests[(next(counter) + worker) % len(requests)]
                start = time.perf_counter()
                try:
                    status = await _exchange(reader, writer, raw)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(type(exc).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                if start >= timed_from:
                    latencies.append(time.perf_counter() - start)
                    if status != 200:
                        errors.append(str(status))
        finally:
            writer.close()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall = time.perf_counter() - wall0
    timed_s = max(1e-9, min(wall, warmup_s + seconds) - warmup_s)
    ms = sorted(t * 1000 for t in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, max(0, math.ceil(p * len(ms)) - 1))] if ms else math.nan

    return {
        "requests": len(ms),
        "requests_per_s": len(ms) / timed_s,
        "p50_ms": statistics.median(ms) if ms else math.nan,
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "client_cpu_s": time.process_time() - cpu0,
        "wall_s": wall,
    }


class _Sampler:
    """The server's RSS (every 0.1 s) and CPU time, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples_mb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK_S

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError):
                self.samples_mb.append(self.rss_mb())

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(index_dir: Path, settings: tuple[str, ...], log: Path) -> Iterator[tuple[int, int]]:
    """`medcap serve` on a free loopback port until ready; (port, pid); always stopped."""
    port = _free_port()
    sets = [arg for s in settings for arg in ("--set", s)]
    cmd = [sys.executable, "-m", "medcap", *sets, "serve", "--index", str(index_dir),
           "--port", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"medcap serve exited: {log.read_text()}")
            url = f"http://127.0.0.1:{port}/readyz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"medcap serve not ready after 300 s: {log.read_text()}")
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _batch_totals(port: int, kind: str) -> tuple[float, float]:
    """(queries, batches) of one kind encoded so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f'medcap_batch_size_{part}{{kind="{kind}"}}'):
                found[part] = float(line.split()[-1])
    return found["sum"], found["count"]


HEADER = (
    f"{'mode':<10} {'kind':<6} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
    f"{'p99 ms':>7} {'err':>4} {'batch':>5} {'srv cpu':>7} {'req/cpu-s':>9} {'cli cpu':>7} "
    f"{'rss MB':>7}"
)


def _phase(
    mode: str, kind: str, level: int, port: int, sampler: _Sampler, requests: list[bytes], args: Any
) -> dict[str, Any]:
    """One load phase against one server, with its CPU, batch sizes and peak RSS."""
    cpu0, seen = sampler.cpu_s(), len(sampler.samples_mb)
    queries0, batches0 = _batch_totals(port, kind)
    stats = asyncio.run(_load(port, requests, level, args.warmup, args.seconds, args.max_requests))
    queries1, batches1 = _batch_totals(port, kind)
    cores = (sampler.cpu_s() - cpu0) / stats["wall_s"]
    return {
        "mode": mode, "kind": kind, "concurrency": level, **stats,
        "server_cpu_cores": cores,
        # requests per second of server CPU: what other jobs on the machine do not change
        "requests_per_server_cpu_s": stats["requests_per_s"] / max(1e-9, cores),
        "client_cpu_cores": stats["client_cpu_s"] / stats["wall_s"],
        "mean_batch_size": (queries1 - queries0) / max(1.0, batches1 - batches0),
        "server_rss_peak_mb": max(sampler.samples_mb[seen:] or [sampler.rss_mb()]),
    }  # fmt: skip


def _run_all(
    index_dir: Path, work: Path, queries: list[tuple[bytes, str]], args: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both servers up at once; each kind and concurrency runs against one, then at once
    against the other, so that both meet the same load from other jobs. (phases, memory)"""
    phases = []
    with contextlib.ExitStack() as stack:
        servers = {
            mode: stack.enter_context(_server(index_dir, settings, work / f"server-{mode}.log"))
            for mode, settings in MODES.items()
        }
        samplers = {mode: stack.enter_context(_Sampler(pid)) for mode, (_, pid) in servers.items()}
        ready = {mode: sampler.samples_mb[0] if sampler.samples_mb else sampler.rss_mb()
                 for mode, sampler in samplers.items()}  # fmt: skip
        for kind in ("image", "text"):
            for level in [int(c) for c in args.concurrency.split(",")]:
                for mode, (port, _) in servers.items():
                    phase = _phase(mode, kind, level, port, samplers[mode],
                                   _requests(port, kind, queries), args)  # fmt: skip
                    phases.append(phase)
                    _print_phase(phase)
    memory = {}
    for mode, sampler in samplers.items():
        samples = sampler.samples_mb
        memory[mode] = {
            "rss_ready_mb": ready[mode],
            "rss_first_phase_peak_mb": max(samples[: max(1, len(samples) // 12)]),
            "rss_peak_mb": max(samples),
            "rss_last_mb": samples[-1],
            "samples": len(samples),
        }
    return phases, memory


def _print_phase(p: dict[str, Any]) -> None:
    print(f"{p['mode']:<10} {p['kind']:<6} {p['concurrency']:>4} {p['requests_per_s']:>8.0f} "
          f"{p['p50_ms']:>7.1f} {p['p95_ms']:>7.1f} {p['p99_ms']:>7.1f} {p['errors']:>4} "
          f"{p['mean_batch_size']:>5.1f} {p['server_cpu_cores']:>7.2f} "
          f"{p['requests_per_server_cpu_s']:>9.0f} "
          f"{p['client_cpu_cores']:>7.2f} {p['server_rss_peak_mb']:>7.0f}", flush=True)  # fmt: skip


def _outcome(phases: list[dict[str, Any]], memory: dict[str, Any]) -> dict[str, Any]:
    """The numbers the goals are about (at the lowest and highest concurrency measured)."""
    image = {(p["mode"], p["concurrency"]): p for p in phases if p["kind"] == "image"}
    low, top = min(c for _, c in image), max(c for _, c in image)
    return {
        "image_p50_ms_c1": image["batched", low]["p50_ms"],
        "image_rps_c32": image["batched", top]["requests_per_s"],
        "batching_speedup_c32": image["batched", top]["requests_per_s"]
        / image["unbatched", top]["requests_per_s"],
        "batching_gain_per_server_cpu_s_c32": image["batched", top]["requests_per_server_cpu_s"]
        / image["unbatched", top]["requests_per_server_cpu_s"],
        "errors": sum(p["errors"] for p in phases),
        "rss_growth_mb": {
            m: v["rss_last_mb"] - v["rss_first_phase_peak_mb"] for m, v in memory.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="indexed cases")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5, help="untimed seconds per phase")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per phase")
    parser.add_argument("--concurrency", default="1,8,32", help="comma list")
    parser.add_argument("--queries", type=int, default=200, help="distinct query images/texts")
    parser.add_argument("--work", type=Path, default=None, help="where the index is built/reused")
    args = parser.parse_args()

    load_before = os.getloadavg()
    work = args.work or Path(tempfile.gettempdir()) / f"medcap-bench-serve-{args.n}"
    data, index_dir = _build(work, args.n)
    queries = _queries(data, args.queries)
    print(HEADER)
    phases, memory = _run_all(index_dir, work, queries, args)
    outcome = _outcome(phases, memory)
    met = {
        "image_p50_ms_c1": outcome["image_p50_ms_c1"] <= GOALS["image_p50_ms_c1"],
        "image_rps_c32": outcome["image_rps_c32"] >= GOALS["image_rps_c32"],
        "batching_speedup_c32": outcome["batching_speedup_c32"] >= GOALS["batching_speedup_c32"],
        "zero_errors": outcome["errors"] == 0,
    }
    print(json.dumps({"outcome": outcome, "goals_met": met, "memory": memory}, indent=2))
    result = {
        "benchmark": "serve",
        "cases": args.n,
        "encoder": "medcap-tiny (random init, seeded)",
        "index_type": "flat",
        "k": 5,
        "query_images": "64x64 PNG phantoms (test split), about 5 kB",
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds_per_phase": args.seconds,
        "warmup_s": args.warmup,
        "load_generator": "one asyncio process, raw HTTP/1.1 keep-alive sockets",
        "goals": GOALS,
        "outcome": outcome,
        "goals_met": met,
        "memory": memory,
        "phases": phases,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
