"""The Ray engine on this machine: overheads, embedding throughput, and the stage rates
that decide where a cluster build stops scaling; then the wall-time estimate from them.

Measured (CPU only, medcap-tiny on 64 px phantoms, so the model costs little and the
engine's own costs show):
  ray          local Ray start and stop, a no-op task's round trip, tasks/s in bulk, an
               actor call's round trip, `ray.put`/`get` of a 2048-case decoded piece
  embed        index build throughput, one process vs `--engine ray` with 1 and 2 CPU
               actors (steady state, from the first shard file to the last, and the whole
               command), and the CPU time per case of the whole process tree in that
               window: the difference to one process is the engine's overhead per case
  stages       per-core rates of the pipeline's other stages: the driver's deferred
               record scan, parquet image-cell reads (fetch_images), decoding 512 px JPEGs
               to 224 px uint8 (one core), writing float16 shards (the driver)
Then `estimate`: wall time to index 80k, 1.6M and 24M images on 1, 8 and 64 GPUs from the
H100 anchor of ~4,000 ViT-B-16 images/s end to end per GPU (no GPU measurement yet), with
the stage that limits each case. Assumptions are in the JSON.

    .venv/bin/python benchmarks/bench_ray.py [--cases 1024] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ANCHOR_GPU_IMAGES_S = 4000.0  # ViT-B-16 end to end on one H100 (FACTS.md; not measured here)
DATASETS = {"80k": 80_000, "1.6M": 1_600_000, "24M": 24_000_000}
GPUS = (1, 8, 64)
# A typical GPU node: 8 GPUs and 96 cores; the driver node writes every shard.
CORES_PER_GPU = 12
IMAGE_KB = 100  # mean stored image size assumed for reading (ROCOv2's JPEGs: ~230 kB)
CLUSTER_START_S = 60.0  # join + actors loading ViT-B-16 (minutes on cold nodes)


def _cpu_seconds(root: int) -> float:
    """CPU time (user + system) of a process and every live descendant, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                todo.append(pid)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def _build(args: list[str], index: Path, shards: int, env: dict[str, str]) -> dict[str, float]:
    """Run `medcap ARGS`; wall time, and CPU time per case between the first and the last
    shard file (start-up excluded): the whole process tree, Ray's processes included."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "medcap", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    emb = index.with_name(index.name + ".partial") / "emb"
    first: tuple[float, float, int] | None = None
    last = first
    while process.poll() is None:
        done = sorted(emb.glob("shard_*.json")) if emb.exists() else []
        if done:
            mark = (time.perf_counter(), _cpu_seconds(process.pid), len(done))
            first = first or mark
            if last is None or last[2] < shards:
                last = mark  # until the last shard: finalising is not embedding
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(process.stderr.read().decode()[-2000:] if process.stderr else "")
    assert first is not None and last is not None and last[2] > first[2], "too few shards"
    metas = [json.loads(p.read_text())["count"] for p in sorted((index / "emb").glob("*.json"))]
    cases = sum(metas[first[2] : last[2]])
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "steady_cases_per_s": round(cases / (last[0] - first[0]), 1),
        "cpu_ms_per_case": round(1000 * (last[1] - first[1]) / cases, 2),
    }


def bench_ray_overheads() -> dict[str, float]:
    import numpy as np
    import ray

    from medcap.config import DEFAULTS, replace_set
    from medcap.dist import ray_session

    cfg = replace_set(DEFAULTS.dist, local_num_cpus=2)
    start = time.perf_counter()
    with ray_session(cfg) as session:
        noop = ray.remote(lambda: None)
        ray.get(noop.remote())  # a worker process exists from here on
        first_task = time.perf_counter() - start
        times = []
        for _ in range(50):
            t = time.perf_counter()
            ray.get(noop.remote())
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(500)])
        bulk = 500 / (time.perf_counter() - t)

        class Echo:
            def call(self, x: Any) -> Any:
                return x

        actor = ray.remote(Echo).remote()
        ray.get(actor.call.remote(0))
        calls = []
        for _ in range(50):
            t = time.perf_counter()
            ray.get(actor.call.remote(0))
            calls.append(time.perf_counter() - t)
        piece = np.zeros((2048, 3, 64, 64), np.uint8)  # a decoded 2048-case piece at 64 px
        t = time.perf_counter()
        ray.get(ray.put(piece))
        put_get = time.perf_counter() - t
        joined = session.started_s
        stop = time.perf_counter()
    stopped = time.perf_counter() - stop
    return {
        "start_s": round(joined, 2),
        "start_to_first_task_s": round(first_task, 2),
        "stop_s": round(stopped, 2),
        "task_round_trip_ms_p50": round(1000 * float(np.median(times)), 2),
        "tasks_per_s_bulk": round(bulk, 1),
        "actor_call_round_trip_ms_p50": round(1000 * float(np.median(calls)), 2),
        "put_get_25MB_ms": round(1000 * put_get, 1),
    }


def bench_embedding(cases: int, work: Path) -> dict[str, Any]:
    from medcap.data import build_phantoms

    data = build_phantoms(work / "phantoms", n=int(cases / 0.8) + 1, seed=0, image_size=64)
    # One torch thread per process (a CPU actor's share): two threads per process on two
    # busy cores spin against each other and made the one-process build 4x slower here.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shard = 64
    common = ["--data", str(data), "--model", "medcap-tiny", "--shard-size", str(shard),
              "--thumbnail-size", "0", "--batch-size", "64"]  # fmt: skip
    out: dict[str, Any] = {"cases": cases}
    runs = [("one_process", [], 0), ("ray_1_actor", ["--engine", "ray", "--actors", "1"], 2),
            ("ray_2_actors", ["--engine", "ray", "--actors", "2"], 3)]  # fmt: skip
    for name, flags, cpus in runs:
        index = work / name
        settings = ["--set", f"dist.local_num_cpus={cpus}"] if cpus else []
        args = [*settings, "index", "build", *common, "--out", str(index), *flags]
        out[name] = _build(args, index, -(-cases // shard), env)
    local = out["one_process"]["cpu_ms_per_case"]
    for name in ("ray_1_actor", "ray_2_actors"):
        out[name]["cpu_overhead_ms_per_case"] = round(out[name]["cpu_ms_per_case"] - local, 2)
    return out


def _jpegs(n: int, side: int = 512) -> list[bytes]:
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(n):
        base = rng.integers(0, 255, (side // 16, side // 16), dtype=np.uint8)
        image = Image.fromarray(base).resize((side, side), Image.BICUBIC).convert("RGB")
        buffer = io.BytesIO()
        image.filter(ImageFilter.GaussianBlur(1)).save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def bench_stages(work: Path, quick: bool) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from medcap.data import fetch_images, open_dataset
    from medcap.encoder.decode import decode_batches, uint8_transform
    from medcap.index.shards import write_shard
    from medcap.types import ImageRef, Record

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    n = 256 if quick else 1024
    blobs = _jpegs(64)
    records = [Record(f"case_{i:07d}", ImageRef(path=f"case_{i}.jpg", data=blobs[i % 64]),
                      "Axial CT of the chest showing a 2 cm nodule in the right upper lobe "
                      "(arrow), with a small pleural effusion on the left.", ("C0040405",),
                      "train", {"modality": "CT"}) for i in range(n)]  # fmt: skip
    # parquet with ROCOv2's columns and row groups of 128: the driver's scan, the tasks' reads
    table = pa.table({
        "image": [{"bytes": r.image.data, "path": r.image.path} for r in records],
        "image_id": [r.image_id for r in records], "caption": [r.caption for r in records],
        "cui": [list(r.cuis) for r in records], "modality": ["CT"] * n,
    })  # fmt: skip
    (work / "parq" / "data").mkdir(parents=True)
    pq.write_table(table, work / "parq" / "data" / "train-00000-of-00001.parquet",
                   row_group_size=128)  # fmt: skip
    dataset = open_dataset(work / "parq").deferred()
    t = time.perf_counter()
    deferred = list(dataset.records("train"))
    out["driver_scan_records_per_s"] = round(n / (time.perf_counter() - t))
    t = time.perf_counter()
    fetched = fetch_images(deferred)
    seconds = time.perf_counter() - t
    mb = sum(len(b) for b in blobs) * n / 64 / 1e6
    out["fetch_images_per_s_one_core"] = round(n / seconds)
    out["fetch_MB_per_s_one_core"] = round(mb / seconds)
    out["jpeg_kB"] = round(sum(len(b) for b in blobs) / 64 / 1e3, 1)

    from medcap.encoder import load_encoder

    transform = uint8_transform(load_encoder("ViT-B-16", device="cpu").preprocess)
    list(decode_batches(fetched[:32], transform, batch_size=32, draft_size=224))  # warm-up
    t = time.perf_counter()
    for _ in decode_batches(fetched, transform, batch_size=256, draft_size=224):
        pass
    out["decode_512px_jpeg_to_224_per_s_one_core"] = round(n / (time.perf_counter() - t), 1)

    shard = 2048
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((shard, 512)).astype(np.float32)
    thumbs = [bytes(4000)] * shard
    many = [records[i % n] for i in range(shard)]
    times = []
    for k in range(2 if quick else 4):
        t = time.perf_counter()
        ids = [r.image_id for r in many]
        write_shard(work / "emb", f"{k:05d}", input_ids=ids, records=many, image_emb=vectors,
                    caption_emb=vectors, thumbnails=thumbs, skipped=[])  # fmt: skip
        times.append(time.perf_counter() - t)
    size = sum(p.stat().st_size for p in (work / "emb").glob("*_00000.*")) / 1e6
    out["shard_write_cases_per_s"] = round(shard / min(times))
    out["shard_write_MB_per_s"] = round(size / min(times), 1)
    out["shard_MB_per_2048_cases"] = round(size, 2)
    return out


def estimate(stages: dict[str, Any], ray_overheads: dict[str, Any]) -> dict[str, Any]:
    """Wall time per (dataset, GPUs): the slowest stage of the pipeline sets the pace.

    Stages: the GPUs at the anchor rate; the read + decode tasks on the GPU nodes' CPUs (a
    task reads its parquet cells, then decodes, on one core); the driver, which scans the
    records, submits two Ray calls per piece and writes every shard, all on one thread.
    """
    per_core = 1 / (1 / stages["fetch_images_per_s_one_core"]
                    + 1 / stages["decode_512px_jpeg_to_224_per_s_one_core"])  # fmt: skip
    piece = 64 * 4  # index.batch_size x dist.batches_per_task
    driver = 1 / (1 / stages["driver_scan_records_per_s"] + 1 / stages["shard_write_cases_per_s"]
                  + 2 / (ray_overheads["tasks_per_s_bulk"] * piece))  # fmt: skip
    rows = {}
    for label, n in DATASETS.items():
        for gpus in GPUS:
            rates = {
                "GPUs": ANCHOR_GPU_IMAGES_S * gpus,
                "read+decode on CPUs": per_core * CORES_PER_GPU * gpus,
                "driver": driver,
            }
            slowest = min(rates, key=lambda k: rates[k])
            rows[f"{label}, {gpus} GPU"] = {
                "minutes": round((n / rates[slowest] + CLUSTER_START_S) / 60, 1),
                "gpu_bound_minutes": round((n / rates["GPUs"] + CLUSTER_START_S) / 60, 1),
                "bottleneck": slowest,
                "images_per_s": round(rates[slowest]),
                "storage_GB_per_s": round(rates[slowest] * IMAGE_KB / 1e6, 2),
            }
    return {
        "assumptions": {
            "gpu_images_per_s": ANCHOR_GPU_IMAGES_S,
            "cores_per_gpu": CORES_PER_GPU,
            "image_kB_read": IMAGE_KB,
            "cluster_start_s": CLUSTER_START_S,
            "read_decode_per_core_per_s": round(per_core, 1),
            "driver_cases_per_s": round(driver),
            "note": "per-core rates are this 2-core machine's; finalise (FAISS) not included",
        },
        "cases": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1024, help="train cases to index")
    parser.add_argument("--quick", action="store_true", help="smaller stage measurements")
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed (pip install 'medcap[dist]'): nothing was measured")
        return 0
    load = os.getloadavg()[0]
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} CPU cores, no GPU, load {load:.1f}"}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        results["ray"] = bench_ray_overheads()
        print("ray:", json.dumps(results["ray"]))
        results["stages"] = bench_stages(work, args.quick)
        print("stages:", json.dumps(results["stages"]))
        results["embed"] = bench_embedding(args.cases, work)
        print("embed:", json.dumps(results["embed"]))
    results["estimate"] = estimate(results["stages"], results["ray"])
    print(f"{'estimate':<28} {'minutes':>8} {'GPU-bound':>10} {'images/s':>9}  bottleneck")
    for name, row in results["estimate"]["cases"].items():
        print(f"{name:<28} {row['minutes']:>8} {row['gpu_bound_minutes']:>10} "
              f"{row['images_per_s']:>9}  {row['bottleneck']}")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'ray.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
