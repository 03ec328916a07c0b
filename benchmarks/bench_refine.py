"""Refining a search, measured: by region, by example (feedback), by concept (text), and
filtered search inside FAISS.

Phantom part: the demo's trained medcap-tiny (`medcap demo`, reused when its output is
there), test-split queries against the train index, image -> image search:

1. region: top-1 / top-5 finding and location match, whole image vs a box around the
   lesion (its centre from the generator's anatomy, `site` / `bone_site`; half the image
   wide): medcap's region search (the whole image's top 50 re-scored by their own same
   region, at several region weights) and, for comparison, the region's vector alone or
   mixed into the query (refine.roi_rerank=0). Queries: cases with a finding.
2. feedback: one Rocchio round marking the top-10 hits that share the query's finding as
   relevant and the other top-10 hits as not. R@10: share of queries with a case in the
   top 10 that matches them on modality, region, finding and location; finding@10: mean
   share of the top 10 sharing the query's finding. In both spaces (images, captions).
3. steering: top-1 / top-5 finding match of the image alone vs the image steered by the
   text "showing a <finding>", at several text weights.

Filtered part: 200,000 synthetic clustered vectors (bench_index.synthetic) indexed as HNSW
and IVF-PQ through `build_index`, a number column `bucket` (0..999) filtered with ranges
keeping 0.1 %, 1 %, 10 % and 50 % of the cases; recall@10 of the filtered FAISS search
(IDSelector) against the exact filtered scan, and queries/s of both paths.

Writes benchmarks/results/refine.json.

    .venv/bin/python benchmarks/bench_refine.py [--demo-dir DIR] [--n 200000] [--skip-filtered]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import synthetic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path("/tmp/medcap_bench_refine")
ROI_SHARE = 0.5  # region side, as a share of the image side
ROI_RUNS = (  # label, roi_weight, roi_rerank
    ("rescored_w0.3", 0.3, 50),
    ("rescored_w0.5", 0.5, 50),
    ("rescored_w0.7", 0.7, 50),
    ("vector_w1", 1.0, 0),
    ("vector_w0.5", 0.5, 0),
)
TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.5)
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5)


# ---- phantoms ---------------------------------------------------------------------------


def demo_dir(path: Path) -> Path:
    """The demo's output folder, made by `medcap demo` unless its index is already there."""
    if not (path / "index" / "manifest.json").exists():
        from medcap.runs.demo import run_demo

        run_demo(path, say=print)
    return path


def lesion_box(extra: dict[str, Any], size: int) -> tuple[int, int, int, int]:
    """A box, ROI_SHARE of the image wide, centred on the lesion (generator's anatomy)."""
    from medcap.data.phantoms.anatomy import bone_site, site

    region, view, side, level = extra["region"], extra["view"], extra["side"], extra["level"]
    if extra["finding"] == "fracture":
        x, y, _ = bone_site(region, view, side, level)
    else:
        x, y = site(region, view, side, level)
    w = int(round(size * ROI_SHARE))
    left = int(round(min(max(x * size - w / 2, 0), size - w)))
    top = int(round(min(max(y * size - w / 2, 0), size - w)))
    return left, top, w, w


def _match(hits: Sequence[Any], query: dict[str, Any], name: str, k: int) -> float:
    top = hits[:k]
    return float(np.mean([h.metadata.get(name) == query[name] for h in top])) if top else 0.0


def _like(hit: Any, query: dict[str, Any]) -> bool:
    return all(
        hit.metadata.get(a) == query[a] for a in ("modality", "region", "finding", "location")
    )


def measure_region(retriever: Any, queries: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Top-1/top-5 finding and location match: whole image vs lesion region."""
    from medcap.config import current, replace_set, use_config
    from medcap.retrieval.refine import Refinement

    out: dict[str, Any] = {"queries": len(queries), "roi_share": ROI_SHARE}
    runs: list[tuple[str, float | None, int]] = [("whole", None, 0), *ROI_RUNS]
    for label, weight, rerank in runs:
        scores: dict[str, list[float]] = {}
        root = current()
        use_config(replace_set(root, refine=replace_set(root.refine, roi_rerank=rerank)))
        try:
            found = []
            for record, image in queries:
                refine = (
                    None
                    if weight is None
                    else Refinement(roi=lesion_box(record.extra, image.width), roi_weight=weight)
                )
                found.append(retriever.search_images([image], 5, mode="images", refine=refine)[0])
        finally:
            use_config(root)
        for (record, _), hits in zip(queries, found, strict=True):
            for name in ("finding", "location"):
                for k in (1, 5):
                    scores.setdefault(f"{name}_top{k}", []).append(
                        _match(hits, record.extra, name, k)
                    )
        out[label] = {key: round(float(np.mean(v)), 4) for key, v in scores.items()}
    return out


def measure_feedback(retriever: Any, queries: list[tuple[Any, Any]]) -> dict[str, Any]:
    """R@10 and finding@10 before and after one Rocchio round, in both spaces."""
    from medcap.retrieval.refine import Refinement

    out: dict[str, Any] = {"queries": len(queries)}
    for mode in ("images", "captions"):
        before_r, after_r, before_f, after_f = [], [], [], []
        for record, image in queries:
            hits = retriever.search_images([image], 10, mode=mode)[0]
            relevant = tuple(
                h.image_id for h in hits if h.metadata.get("finding") == record.extra["finding"]
            )
            other = tuple(h.image_id for h in hits if h.image_id not in relevant)
            refine = Refinement(more_like=relevant, less_like=other)
            again = retriever.search_images([image], 10, mode=mode, refine=refine)[0]
            before_r.append(any(_like(h, record.extra) for h in hits))
            after_r.append(any(_like(h, record.extra) for h in again))
            before_f.append(_match(hits, record.extra, "finding", 10))
            after_f.append(_match(again, record.extra, "finding", 10))
        out[mode] = {
            "R@10_before": round(float(np.mean(before_r)), 4),
            "R@10_after": round(float(np.mean(after_r)), 4),
            "finding@10_before": round(float(np.mean(before_f)), 4),
            "finding@10_after": round(float(np.mean(after_f)), 4),
        }
    return out


def measure_steering(retriever: Any, queries: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Finding match of the image alone vs steered by a text naming the finding."""
    from medcap.retrieval.refine import Refinement

    out: dict[str, Any] = {"queries": len(queries), "text": "showing a <finding>"}
    runs: dict[str, Any] = {"image": None}
    runs.update({f"steered_w{w:g}": w for w in TEXT_WEIGHTS})
    for label, weight in runs.items():
        top1, top5 = [], []
        for record, image in queries:
            refine = (
                None
                if weight is None
                else Refinement(text=f"showing a {record.extra['finding']}", text_weight=weight)
            )
            hits = retriever.search_images([image], 5, mode="images", refine=refine)[0]
            top1.append(_match(hits, record.extra, "finding", 1))
            top5.append(_match(hits, record.extra, "finding", 5))
        out[label] = {
            "finding_top1": round(float(np.mean(top1)), 4),
            "finding_top5": round(float(np.mean(top5)), 4),
        }
    return out


def section_phantoms(args: argparse.Namespace) -> dict[str, Any]:
    from medcap.data.images import load_image
    from medcap.data.readers import open_dataset
    from medcap.retrieval.retriever import open_retriever

    folder = demo_dir(Path(args.demo_dir))
    retriever = open_retriever(folder / "index", device="cpu")
    dataset = open_dataset(folder / "phantoms")
    test = [r for r in dataset.records("test") if r.extra.get("finding") not in (None, "none")]
    test = test[: args.queries]
    queries = [(r, load_image(r.image)) for r in test]
    start = time.perf_counter()
    result = {
        "demo_dir": str(folder),
        "index_cases": len(retriever),
        "region": measure_region(retriever, queries),
        "feedback": measure_feedback(retriever, queries),
        "steering": measure_steering(retriever, queries),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


# ---- filtered search at 200,000 vectors ------------------------------------------------------


class BucketEncoder:
    """Synthetic clustered vectors for records (measures the index, not a model)."""

    def __init__(self, dim: int) -> None:
        self.spec, self.fingerprint, self.embed_dim = "synthetic", "synthetic-refine", dim
        self.calls = 0

    def encode_cases(
        self, records: Sequence[Any], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Any], np.ndarray, np.ndarray, list[Any]]:
        self.calls += 1
        img = synthetic(len(records), self.embed_dim, seed=self.calls)
        return list(records), img, img, []


def _records(n: int) -> Iterator[Any]:
    from medcap.types import ImageRef, Record

    rng = np.random.default_rng(7)
    buckets = rng.integers(0, 1000, n)
    for i in range(n):
        yield Record(
            image_id=f"case_{i:07d}",
            image=ImageRef(path=f"case_{i:07d}.jpg"),
            caption="synthetic",
            extra={"bucket": int(buckets[i])},
        )


def _timed(index: Any, queries: np.ndarray, where: Any = None) -> tuple[list[Any], float]:
    """(results, queries/s) of one batched search for the top 10."""
    start = time.perf_counter()
    found = index.search_rows(queries, 10, target="images", where=where)
    return found, len(queries) / (time.perf_counter() - start)


def section_filtered(args: argparse.Namespace) -> dict[str, Any]:
    from medcap.config import DEFAULTS, replace_set
    from medcap.index import build_index, faiss_ops, open_index

    faiss_ops.set_threads(2)
    out: dict[str, Any] = {"n": args.n, "dim": args.dim, "queries": args.filter_queries}
    for index_type in ("hnsw", "ivfpq"):
        path = WORK / f"filtered_{index_type}_{args.n}_{args.dim}"
        if not (path / "manifest.json").exists():
            cfg = replace_set(
                DEFAULTS.index, index_type=index_type, shard_size=50_000, thumbnail_size=0
            )
            start = time.perf_counter()
            build_index(_records(args.n), BucketEncoder(args.dim), path, cfg, overwrite=True)
            print(f"built {index_type} in {time.perf_counter() - start:.0f} s", flush=True)
        index = open_index(path, device="cpu")
        index.load()  # the FAISS files load now, not inside the first timed search
        gallery = index.embeddings("images")
        rng = np.random.default_rng(3)
        q = gallery[rng.choice(len(gallery), args.filter_queries, replace=False)]
        q = q + 0.3 / np.sqrt(args.dim) * rng.standard_normal(q.shape).astype(np.float32)
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        # the first FAISS search of a process can take minutes on a loaded machine (seen
        # here with HNSW and IVF-PQ alike): one untimed search first
        _timed(index, q[:2])
        rows_plain = {
            "factory": index.manifest.index.factory,
            "unfiltered_qps": round(_timed(index, q)[1], 1),
        }
        for share in SELECTIVITIES:
            top = int(round(1000 * share)) - 1
            where = {"bucket": f"0..{top}"}
            kept = index.matching_rows(where)
            assert kept is not None
            scores = q @ gallery[kept].T
            truth = [set(kept[np.argsort(-s)[:10]].tolist()) for s in scores]
            index.filter_scan_max_rows = 0  # the FAISS path (IDSelector)
            found, faiss_qps = _timed(index, q, where)
            recall = np.mean(
                [len({r for r, _ in f} & t) / 10 for f, t in zip(found, truth, strict=True)]
            )
            full = np.mean([len(f) == min(10, len(kept)) for f in found])
            index.filter_scan_max_rows = args.n  # the exact scan
            _, scan_qps = _timed(index, q, where)
            rows_plain[f"{share:g}"] = {
                "kept": int(len(kept)),
                "recall_at_10": round(float(recall), 4),
                "full_k_share": round(float(full), 4),
                "faiss_qps": round(faiss_qps, 1),
                "scan_qps": round(scan_qps, 1),
            }
            print(index_type, share, rows_plain[f"{share:g}"], flush=True)
        out[index_type] = rows_plain
    return out


def print_tables(r: dict[str, Any]) -> None:
    p = r.get("phantoms")
    if p:
        print("\nregion (image -> image, test vs train):")
        for label, m in p["region"].items():
            if isinstance(m, dict):
                print(f"  {label:<14} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
        print("feedback (one Rocchio round):")
        for mode in ("images", "captions"):
            print(
                f"  {mode:<9} " + "  ".join(f"{k} {v:.3f}" for k, v in p["feedback"][mode].items())
            )
        print("steering:")
        for label, m in p["steering"].items():
            if isinstance(m, dict):
                print(f"  {label:<14} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    f = r.get("filtered")
    if f:
        print(f"\nfiltered search, {f['n']} x {f['dim']}:")
        for index_type in ("hnsw", "ivfpq"):
            for share, m in f[index_type].items():
                if isinstance(m, dict):
                    print(f"  {index_type:<6} {share:>6} {m}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo-dir", default=str(WORK / "demo"))
    p.add_argument("--queries", type=int, default=300, help="phantom test queries with a finding")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--filter-queries", type=int, default=200)
    p.add_argument("--skip-filtered", action="store_true")
    p.add_argument("--skip-phantoms", action="store_true")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    result: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]}
    if not args.skip_phantoms:
        result["phantoms"] = section_phantoms(args)
    if not args.skip_filtered:
        result["filtered"] = section_filtered(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "refine.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(result)
    path.write_text(json.dumps(old, indent=2) + "\n")
    print_tables(old)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
