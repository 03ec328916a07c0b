"""Where the time of `medcap search img.png --index DIR` goes, from a fresh shell.

Builds a phantom index with the tiny model as `medcap index build` does, caching the
traced image tower (or uses --index/--query), then measures in fresh processes: the whole
command's wall time (median of --repeats) with that cache, and with an empty cache (the
full open_clip encoder, as for an index built before the cache existed); bare Python
start; and, inside one process, each stage of the cached path in order: importing
medcap.cli, torch, faiss, the rest of medcap's search path, opening the index, loading
the image tower, decoding and embedding the query, searching, and formatting.

    .venv/bin/python benchmarks/bench_search_cli.py [--index DIR --query IMG] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "search_cli.json"

STAGES = r"""
import json, sys, time
t = [("start", time.perf_counter())]
def mark(name): t.append((name, time.perf_counter()))
import medcap.cli; mark("import medcap.cli (typer)")
import torch; mark("import torch")
import faiss; mark("import faiss")
import medcap.retrieval.retriever, medcap.data.images; mark("import medcap search path")
from medcap.index import open_index
index = open_index(sys.argv[1]); mark("open index (manifest, items)")
from medcap.encoder.image_tower import load_image_tower
encoder = load_image_tower(index.manifest.fingerprint, None); mark("load cached image tower")
assert encoder is not None and "open_clip" not in sys.modules
from medcap.data.images import load_image
q = encoder.encode_images([load_image(sys.argv[2])]); mark("decode + embed query")
hits = index.search(q, 5, target="captions"); mark("search (loads FAISS file)")
from medcap.cli.search import _table
text = _table(sys.argv[2], hits[0], "captions"); mark("format output")
print(json.dumps([[n, b - a] for (_, a), (n, b) in zip(t, t[1:])]))
"""


def _wall(cmd: list[str], repeats: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def _build_default(tmp: Path) -> tuple[Path, Path]:
    from medcap.config import DEFAULTS
    from medcap.data import build_phantoms, open_dataset
    from medcap.encoder import load_encoder
    from medcap.encoder.image_tower import save_image_tower
    from medcap.index import build_index

    data = build_phantoms(tmp / "phantoms", n=200, seed=0, image_size=64)
    dataset = open_dataset(data)
    index_dir = tmp / "index"
    encoder = load_encoder("medcap-tiny", device="cpu")
    build_index(dataset.records("train"), encoder, index_dir, DEFAULTS.index)
    save_image_tower(encoder)  # as `medcap index build` does
    record = next(iter(dataset.records("test")))
    query = tmp / f"{record.image_id}.png"
    query.write_bytes(record.image.data or b"")
    return index_dir, query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="index directory (default: build a phantom one)")
    parser.add_argument("--query", type=Path, help="query image (default: a phantom test image)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDCAP_CACHE_DIR"] = str(Path(tmp) / "cache")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
        index_dir, query = (args.index, args.query) if args.index else _build_default(Path(tmp))
        medcap = str(Path(sys.executable).with_name("medcap"))
        cmd = [medcap, "search", str(query), "--index", str(index_dir)]
        _wall(cmd, 1, env)  # warm the page cache (and the tower cache, for --index)
        total = _wall(cmd, args.repeats, env)
        uncached = []
        for i in range(args.repeats):  # a fresh empty cache each time: the open_clip path
            cold_env = {**env, "MEDCAP_CACHE_DIR": str(Path(tmp) / f"empty{i}")}
            uncached += _wall(cmd, 1, cold_env)
        python = _wall([sys.executable, "-c", "pass"], args.repeats, env)
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, "-c", STAGES, str(index_dir), str(query)],
                check=True, capture_output=True, text=True, env=env,
            )  # fmt: skip
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    stages = {name: statistics.median(r[i][1] for r in runs) for i, (name, _) in enumerate(runs[0])}
    result = {
        "command": "medcap search IMG --index DIR (tiny model, phantom index)",
        "repeats": args.repeats,
        "total_wall_s_median": statistics.median(total),
        "total_wall_s_all": total,
        "uncached_wall_s_median": statistics.median(uncached),
        "uncached_wall_s_all": uncached,
        "python_start_s_median": statistics.median(python),
        "stages_s_median": stages,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print(f"{'stage':<34} {'seconds':>8}")
    print(f"{'python start (bare)':<34} {result['python_start_s_median']:8.3f}")
    for name, sec in stages.items():
        print(f"{name:<34} {sec:8.3f}")
    print(f"{'sum of stages':<34} {sum(stages.values()):8.3f}")
    print(f"{'whole command (wall, median)':<34} {result['total_wall_s_median']:8.3f}")
    print(f"{'... with no cached tower':<34} {result['uncached_wall_s_median']:8.3f}")
    print(f"load average during the run: {result['load_average']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
