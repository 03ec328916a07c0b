"""Index benchmarks: build time and memory, flat search speed, approximate recall, GPU search.

Sections (each run in its own process so peak RSS is its own):
  build   build_index over --n-build cases of --dim-d synthetic vectors (no encoder):
          shards, both FAISS files, items.parquet, manifest. Time and peak RSS.
  flat    the flat index from `build`: batched queries/s (one call, and calls of 16)
          and single-query p50/p95 latency on --threads threads, raw FAISS and through
          IndexDir.search (Hits; single queries there use the exact float16 scan).
  approx  HNSW and IVF-PQ (as `auto` would size them) over --n-approx vectors of one
          target: build time, peak RSS, recall@10 against exact search, query latency.
  gpu     exact search on one GPU, batched queries/s including transfers: faiss-gpu when
          installed, else the torch matmul + topk; its top-10 checked against faiss on
          the CPU. Skipped without CUDA; `--device cpu` runs it on faiss-cpu (smoke run).

Synthetic vectors imitate embeddings: a 64-d latent mixture of 1,000 clusters mapped
to --dim dims plus noise and normalised (--data uniform gives isotropic random unit
vectors, the hardest case for approximate search). Queries are indexed vectors moved
by a random perturbation of norm QUERY_NOISE (cosine ~0.96 to their source).

    .venv/bin/python benchmarks/bench_index.py [--n-build 80000] [--n-approx 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from timing import timed_rate

RESULTS = Path(__file__).parent / "results"
QUERY_NOISE = 0.3  # norm of the perturbation turning an indexed vector into a query
GOAL_GPU_QPS = 1_000_000  # issue 3: exact search, batched, on one GPU


def synthetic(n: int, dim: int, seed: int, kind: str = "clustered") -> np.ndarray:
    """(n, dim) float32 unit vectors, generated in blocks (deterministic per seed)."""
    rng = np.random.default_rng(1234)  # the same "embedding space" for every seed
    basis = rng.standard_normal((64, dim)).astype(np.float32) / 8
    centers = rng.standard_normal((1000, 64)).astype(np.float32)
    mean = rng.standard_normal(dim).astype(np.float32) * 0.05
    out = np.empty((n, dim), np.float32)
    r = np.random.default_rng(seed)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        if kind == "uniform":
            x = r.standard_normal((m, dim)).astype(np.float32)
        else:
            latent = centers[r.integers(0, 1000, m)] + 0.6 * r.standard_normal((m, 64)).astype(
                np.float32
            )
            x = latent @ basis + mean + 0.02 * r.standard_normal((m, dim)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


class SyntheticEncoder:
    """A CaseEncoder returning synthetic vectors (measures the index, not a model)."""

    def __init__(self, dim: int, kind: str) -> None:
        self.spec, self.fingerprint, self.embed_dim, self.kind = (
            "synthetic",
            "synthetic-0",
            dim,
            kind,
        )
        self.calls = 0

    def encode_cases(
        self, records: Sequence[Any], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Any], np.ndarray, np.ndarray, list[Any]]:
        self.calls += 1
        img = synthetic(len(records), self.embed_dim, seed=self.calls, kind=self.kind)
        cap = synthetic(len(records), self.embed_dim, seed=10_000 + self.calls, kind=self.kind)
        return list(records), img, cap, []


def _records(n: int) -> Iterator[Any]:
    from medcap.types import ImageRef, Record

    for i in range(n):
        yield Record(
            image_id=f"case_{i:07d}",
            image=ImageRef(path=f"case_{i:07d}.jpg"),
            caption=f"Axial CT of the chest showing a {i % 7} cm nodule (case {i}).",
            cuis=("C0040405", "C0817096"),
            extra={"modality": "CT"},
        )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _threads(n: int) -> None:
    from medcap.index import faiss_ops

    faiss_ops.set_threads(n)


def section_build(args: argparse.Namespace) -> dict[str, Any]:
    from medcap.config import DEFAULTS
    from medcap.index import build_index

    _threads(args.threads)
    base = _peak_rss_mb()
    out = Path(args.workdir) / "flat80k"
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    index = build_index(
        _records(args.n_build), SyntheticEncoder(args.dim, args.data), out, DEFAULTS.index
    )
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "n": args.n_build,
        "dim": args.dim,
        "index_type": index.manifest.index.factory,
        "build_s": seconds,
        "cases_per_s": args.n_build / seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": base,
        "dir_size_mb": size / 1e6,
    }


def _latencies(fn: Any, queries: np.ndarray) -> dict[str, float]:
    for q in queries[:20]:
        fn(q[None])
    lat = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None])
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return {
        "p50_ms": statistics.median(lat),
        "p95_ms": lat[int(0.95 * (len(lat) - 1))],
        "mean_ms": statistics.fmean(lat),
    }


def _qps(fn: Any, queries: np.ndarray, repeats: int = 3) -> float:
    fn(queries[:64])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(queries)
        best = min(best, time.perf_counter() - t)
    return len(queries) / best


def section_flat(args: argparse.Namespace) -> dict[str, Any]:
    from medcap.index import faiss_ops, open_index

    _threads(args.threads)
    index = open_index(Path(args.workdir) / "flat80k", device="cpu", preload=True)
    gallery = index.embeddings("captions")
    rng = np.random.default_rng(7)
    queries = gallery[rng.integers(0, len(gallery), args.queries)] + QUERY_NOISE / np.sqrt(
        args.dim
    ) * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    raw = faiss_ops.read_index(index.path / "caption.faiss")
    k = 10
    res: dict[str, Any] = {"n": len(index), "dim": args.dim, "k": k, "threads": args.threads}
    res["raw_faiss_batched_qps"] = _qps(lambda q: faiss_ops.search(raw, q, k), queries)
    res["indexdir_batched_qps"] = _qps(lambda q: index.search(q, k, target="captions"), queries)
    res["indexdir_batches_of_16_qps"] = _qps(
        lambda q: [index.search(q[s : s + 16], k, target="captions") for s in range(0, len(q), 16)],
        queries[:1024],
    )
    single = queries[: args.single_queries]
    res["raw_faiss_single"] = _latencies(lambda q: faiss_ops.search(raw, q, k), single)
    res["indexdir_single"] = _latencies(lambda q: index.search(q, k, target="captions"), single)
    return res


def section_approx(args: argparse.Namespace) -> dict[str, Any]:
    from medcap.config import DEFAULTS, replace_set
    from medcap.index import faiss_ops
    from medcap.index.planner import plan_index
    from medcap.index.searchers import FaissSearcher
    from medcap.index.shards import ShardVectors

    _threads(args.threads)
    kind = args.approx_type
    n, dim = args.n_approx, args.dim
    emb = Path(args.workdir) / f"approx_emb_{n}"
    if not (emb / "done").exists():
        emb.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(range(0, n, 100_000)):
            block = synthetic(min(100_000, n - s), dim, seed=100 + i, kind=args.data)
            np.save(emb / f"image_{i:05d}.npy", block.astype(np.float16))
        (emb / "done").write_text("ok")
    names = sorted(p.stem.removeprefix("image_") for p in emb.glob("image_*.npy"))
    vectors = ShardVectors(emb, names, "images")
    rng = np.random.default_rng(11)
    qrows = rng.integers(0, n, args.recall_queries)
    queries = vectors.gather(qrows) + QUERY_NOISE / np.sqrt(dim) * rng.standard_normal(
        (len(qrows), dim)
    ).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    base = _peak_rss_mb()
    cfg = replace_set(DEFAULTS.index, index_type=kind)
    plan = plan_index(n, dim, cfg)
    start = time.perf_counter()
    index = faiss_ops.new_index(plan.factory, dim)
    if not faiss_ops.is_trained(index):
        sample = np.sort(rng.choice(n, size=min(plan.train_size, n), replace=False))
        faiss_ops.train_index(index, vectors.gather(sample))
    train_s = time.perf_counter() - start
    for name in names:
        from medcap.index.shards import load_shard_vectors, to_unit_float32

        faiss_ops.add_vectors(index, to_unit_float32(load_shard_vectors(emb, name, "images")))
    build_s = time.perf_counter() - start
    peak = _peak_rss_mb()
    searcher = FaissSearcher(index, index_type=plan.type, params=plan.params, shard_vectors=vectors)
    # exact ground truth, block by block over the shards
    exact = faiss_ops.new_index("Flat", dim)
    for name in names:
        faiss_ops.add_vectors(exact, to_unit_float32(load_shard_vectors(emb, name, "images")))
    _, truth = faiss_ops.search(exact, queries, 10)
    del exact
    _, found = searcher.search(queries, 10)
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    return {
        "type": plan.type,
        "factory": plan.factory,
        "params": plan.params,
        "n": n,
        "dim": dim,
        "data": args.data,
        "train_s": train_s,
        "build_s": build_s,
        "peak_rss_mb": peak,
        "rss_before_build_mb": base,
        "estimated_index_mb": plan.bytes_per_index / 1e6,
        "recall_at_10": recall,
        "batched_qps": _qps(lambda q: searcher.search(q, 10), queries, repeats=1),
        "single": _latencies(lambda q: searcher.search(q, 10), queries[: args.single_queries]),
    }


def section_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """Exact batched search on the GPU: faiss-gpu when installed, else the torch matmul."""
    import torch

    from medcap.index import faiss_ops
    from medcap.index.search_plan import plan_search
    from medcap.index.searchers import FaissSearcher, Searcher, TorchSearcher

    cuda = torch.cuda.is_available()
    if args.device != "cpu" and not cuda:
        return {"skipped": "no CUDA device in this environment"}
    gallery = synthetic(args.n_build, args.dim, seed=1, kind=args.data)
    queries = synthetic(args.gpu_queries, args.dim, seed=2, kind=args.data)
    cpu_index = faiss_ops.new_index("Flat", args.dim)
    faiss_ops.add_vectors(cpu_index, gallery)
    plan = plan_search("flat", "Flat", args.device, faiss_gpus=faiss_ops.num_gpus(), cuda=cuda)
    searcher: Searcher
    if plan.backend == "torch":
        searcher = TorchSearcher(gallery, f"cuda:{plan.gpu}")
    else:  # faiss-gpu, or faiss on the CPU for a --device cpu smoke run
        searcher = FaissSearcher(
            cpu_index, index_type="flat", params={}, shard_vectors=None, gpu=plan.gpu,
            half_scan_max_queries=0,
        )  # fmt: skip

    def sync() -> None:
        if plan.gpu is not None:
            torch.cuda.synchronize(plan.gpu)

    k = 10
    qps = timed_rate(lambda: searcher.search(queries, k), len(queries), sync)
    check = queries[: min(1000, len(queries))]
    scores, rows = searcher.search(check, k)
    ref_scores, ref_rows = faiss_ops.search(cpu_index, check, k)
    return {
        "device": torch.cuda.get_device_name(plan.gpu) if plan.gpu is not None else "cpu",
        "backend": searcher.name,
        "n": args.n_build,
        "dim": args.dim,
        "k": k,
        "queries": len(queries),
        "batched_qps_including_transfers": qps,
        "same_rows_as_cpu_flat": float(np.mean(rows == ref_rows)),
        "max_score_diff_vs_cpu_flat": float(np.abs(scores - ref_scores).max()),
        "goal_qps": GOAL_GPU_QPS,
    }


SECTIONS = {
    "build": section_build,
    "flat": section_flat,
    "approx": section_approx,
    "gpu": section_gpu,
}


def _run_section(name: str, argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--section", name, *argv], capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-build", type=int, default=80_000)
    p.add_argument("--n-approx", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--queries", type=int, default=2000, help="batched queries for q/s")
    p.add_argument("--single-queries", type=int, default=300, help="one-at-a-time queries")
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    p.add_argument("--types", default="hnsw,ivfpq", help="approximate types to measure")
    p.add_argument("--sections", default="build,flat,approx,gpu")
    p.add_argument("--device", default="cuda", help="gpu section: cuda | cuda:N | cpu")
    p.add_argument("--gpu-queries", type=int, default=65536, help="gpu section: batched queries")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for index.json")
    p.add_argument("--section", help=argparse.SUPPRESS)
    p.add_argument("--approx-type", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.section:
        print(json.dumps(SECTIONS[args.section](args)))
        return
    common = [
        f"--n-build={args.n_build}", f"--n-approx={args.n_approx}", f"--dim={args.dim}",
        f"--threads={args.threads}", f"--queries={args.queries}", f"--data={args.data}",
        f"--single-queries={args.single_queries}", f"--recall-queries={args.recall_queries}",
        f"--device={args.device}", f"--gpu-queries={args.gpu_queries}",
    ]  # fmt: skip
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
    wanted = args.sections.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        common.append(f"--workdir={tmp}")
        if "build" in wanted or "flat" in wanted:
            results["build"] = _run_section("build", common)
            print(f"build  {json.dumps(results['build'])}", flush=True)
        if "flat" in wanted:
            results["flat"] = _run_section("flat", common)
            print(f"flat   {json.dumps(results['flat'])}", flush=True)
        if "approx" in wanted:
            results["approx"] = {}
            for kind in args.types.split(","):
                results["approx"][kind] = _run_section("approx", [*common, f"--approx-type={kind}"])
                print(f"approx {kind} {json.dumps(results['approx'][kind])}", flush=True)
    if "gpu" in wanted:
        results["gpu"] = _run_section("gpu", common)
        print(f"gpu    {json.dumps(results['gpu'])}")
    results["load_average_end"] = os.getloadavg()
    _print_table(results)
    # Sections run separately (e.g. `--sections approx --n-approx 1000000`) are merged
    # into the results file, each keeping the load average it ran under.
    path = args.out / "index.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    for key in ("build", "flat", "gpu"):
        if key in results:
            name = f"flat_{args.threads}_threads" if key == "flat" else key
            merged[name] = {**results[key], "load_average": results["load_average_start"]}
    for kind, value in results.get("approx", {}).items():
        merged.setdefault("approx", {})[f"{kind}_{value.get('n', args.n_approx)}"] = {
            **value,
            "load_average": results["load_average_start"],
        }
    merged["cpu_count"] = results["cpu_count"]
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"wrote {path}")


def _print_table(r: dict[str, Any]) -> None:
    print("\nsummary")
    b = r.get("build", {})
    if "build_s" in b:
        print(
            f"  build {b['n']} x {b['dim']}: {b['build_s']:.1f} s "
            f"({b['cases_per_s']:.0f} cases/s), "
            f"peak RSS {b['peak_rss_mb']:.0f} MB, directory {b['dir_size_mb']:.0f} MB"
        )
    f = r.get("flat", {})
    if "raw_faiss_batched_qps" in f:
        print(
            f"  flat {f['n']} x {f['dim']} on {f['threads']} threads: batched "
            f"{f['raw_faiss_batched_qps']:.0f} q/s raw FAISS, {f['indexdir_batched_qps']:.0f} q/s "
            f"with Hits ({f['indexdir_batches_of_16_qps']:.0f} q/s in calls of 16); single "
            f"p50/p95 {f['raw_faiss_single']['p50_ms']:.2f}/"
            f"{f['raw_faiss_single']['p95_ms']:.2f} ms raw, {f['indexdir_single']['p50_ms']:.2f}/"
            f"{f['indexdir_single']['p95_ms']:.2f} ms with Hits"
        )
    for kind, a in r.get("approx", {}).items():
        if "recall_at_10" in a:
            print(
                f"  {kind} {a['factory']} {a['n']} x {a['dim']}: "
                f"recall@10 {a['recall_at_10']:.3f}, "
                f"build {a['build_s']:.0f} s, peak RSS {a['peak_rss_mb']:.0f} MB, "
                f"{a['batched_qps']:.0f} q/s batched, p95 {a['single']['p95_ms']:.2f} ms"
            )
        else:
            print(f"  {kind}: {a}")
    g = r.get("gpu", {})
    if "batched_qps_including_transfers" in g:
        print(
            f"  gpu exact search {g['n']} x {g['dim']} with {g['backend']} on {g['device']}: "
            f"{g['batched_qps_including_transfers']:.0f} q/s batched (goal >= {GOAL_GPU_QPS}), "
            f"top-{g['k']} rows equal to faiss-cpu: {g['same_rows_as_cpu_flat']:.4f}"
        )
    elif g:
        print(f"  gpu: {g}")


if __name__ == "__main__":
    main()
