"""What verifying an index's checksums costs when it is opened (`open_index(verify=...)`).

Builds an exact flat index of --n cases x --dim synthetic vectors (no encoder, no
thumbnails: image.faiss, caption.faiss, items.parquet and the float16 shards), then times
`open_index` with and without verification (files in the page cache, as on a machine that
searches often: the best of --repeats), and the raw hashing speed of the same files with
each algorithm medcap can record (xxh3_128, the default, and sha256).

    .venv/bin/python benchmarks/bench_verify.py [--n 80000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_index import SyntheticEncoder, _records

RESULTS = Path(__file__).parent / "results" / "verify.json"


def _best_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: the files enter the page cache
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    from medcap.checksums import ALGORITHMS, file_checksum
    from medcap.config import DEFAULTS, replace_set
    from medcap.index import build_index, open_index

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=80_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    results: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "index"
        start = time.perf_counter()
        cfg = replace_set(DEFAULTS.index, index_type="flat")
        build_index(_records(args.n), SyntheticEncoder(args.dim, "clustered"), out, cfg)
        results["build_s"] = time.perf_counter() - start
        files = [p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"]
        size = sum(p.stat().st_size for p in files)
        results["files"] = len(files)
        results["checked_mb"] = size / 1e6
        results["open_unverified_s"] = _best_s(lambda: open_index(out, verify=False), args.repeats)
        results["open_verified_s"] = _best_s(lambda: open_index(out, verify=True), args.repeats)
        results["hash_mb_per_s"] = {}
        for algorithm in ALGORITHMS:
            seconds = _best_s(
                lambda a=algorithm: [file_checksum(p, a) for p in files], args.repeats
            )
            results["hash_mb_per_s"][algorithm] = size / 1e6 / seconds
    results["load_average_end"] = os.getloadavg()
    verify_cost = results["open_verified_s"] - results["open_unverified_s"]
    print(
        f"flat index {args.n} x {args.dim}: {results['files']} files, "
        f"{results['checked_mb']:.0f} MB checked"
    )
    print(
        f"open_index: {results['open_unverified_s'] * 1000:.0f} ms without verification, "
        f"{results['open_verified_s'] * 1000:.0f} ms with (+{verify_cost * 1000:.0f} ms)"
    )
    for algorithm, speed in results["hash_mb_per_s"].items():
        print(f"hashing with {algorithm}: {speed:.0f} MB/s ({size / 1e6 / speed:.2f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
