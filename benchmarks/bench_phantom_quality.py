"""Phantom retrieval quality: `medcap train` with medcap-tiny for about 3 minutes on this CPU.

1. writes N phantoms (`build_phantoms`, layout a),
2. runs `medcap train` (the real CLI) on their train split, with --max-minutes as a hard cap,
3. loads the best checkpoint and measures, on the validation split:
   image->text and text->image Recall@1/5/10 and median rank (chance: k / n), and the
   top-1 neighbour attribute match (modality, region, finding, location) against chance,
   for image->image search (self excluded) and image->caption search (own caption excluded).

Writes benchmarks/results/phantom_quality.json. Timings depend on what else runs on the
machine: the load average before and after is recorded with them.

    .venv/bin/python benchmarks/bench_phantom_quality.py [--n 3000] [--minutes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ATTRIBUTES = ("modality", "region", "finding", "location")
# FACTS.md: the 150 s sketch, on 500 test pairs of simpler phantoms.
SKETCH_BASELINE = {"i2t_R@10": 0.69, "i2t_R@1": 0.16, "modality": 1.0, "region": 0.83,
                   "finding": 0.71, "location": 0.36}  # fmt: skip


def match_rate(
    labels: list[Any], neighbours: np.ndarray, gallery: list[Any] | None = None
) -> float:
    """Share of queries whose neighbour (index into `gallery`, default `labels`) has the
    query's label."""
    gallery = labels if gallery is None else gallery
    return float(np.mean([labels[i] == gallery[j] for i, j in enumerate(neighbours)]))


def chance_rate(labels: list[Any], gallery: list[Any] | None = None) -> float:
    """Probability that a random gallery case (another case, without a gallery) shares a
    query's label."""
    if gallery is None:
        n, counts = len(labels), Counter(labels).values()
        return float(sum(c * (c - 1) for c in counts) / (n * (n - 1)))
    g = Counter(gallery)
    return float(np.mean([g[v] / len(gallery) for v in labels]))


def measure_quality(
    encoder: Any, records: list[Any], gallery_records: list[Any] | None = None
) -> dict[str, Any]:
    """Retrieval metrics and top-1 neighbour attribute matches of `encoder` on `records`.

    Pairs: image i and caption i of `records` (R@k, chance k / n). Neighbours: within
    `records` (self excluded: i2i image->image, i2t image->another case's caption) and,
    when `gallery_records` is given (the train split, as an index holds it), the nearest
    gallery image (`gallery_i2i`) and caption (`gallery_i2t`).
    """
    from medcap.retrieval.metrics import median_rank, ranks_from_scores, recall_at_k

    kept, images, captions, skipped = encoder.encode_cases(records)
    n = len(kept)
    scores = images @ captions.T  # (n, n) cosine, pair i is (image i, caption i)
    truth = np.arange(n)
    out: dict[str, Any] = {"pairs": n, "skipped": len(skipped)}
    for name, matrix in (("i2t", scores), ("t2i", scores.T)):
        ranks = ranks_from_scores(matrix, truth)
        for k in (1, 5, 10):
            out[f"{name}_R@{k}"] = recall_at_k(ranks, k)
        out[f"{name}_median_rank"] = median_rank(ranks)
    for k in (1, 5, 10):
        out[f"chance_R@{k}"] = k / n
    image_sims = images @ images.T
    np.fill_diagonal(image_sims, -np.inf)
    other_captions = scores.copy()
    np.fill_diagonal(other_captions, -np.inf)
    neighbours = {"i2i": image_sims.argmax(1), "i2t": other_captions.argmax(1)}
    gallery: list[Any] = []
    if gallery_records:
        gallery, g_images, g_captions, _ = encoder.encode_cases(gallery_records)
        out["gallery_size"] = len(gallery)
        neighbours["gallery_i2i"] = (images @ g_images.T).argmax(1)
        neighbours["gallery_i2t"] = (images @ g_captions.T).argmax(1)
    for attribute in ATTRIBUTES:
        labels = [str(r.extra.get(attribute)) for r in kept]
        gallery_labels = [str(r.extra.get(attribute)) for r in gallery]
        out[f"chance_{attribute}"] = chance_rate(labels)
        if gallery:
            out[f"chance_gallery_{attribute}"] = chance_rate(labels, gallery_labels)
        for name, top1 in neighbours.items():
            other = gallery_labels if name.startswith("gallery") else None
            out[f"{name}_top1_{attribute}"] = match_rate(labels, top1, other)
    return out


def _load() -> float:
    return os.getloadavg()[0]


def calibrate_epochs(
    medcap: Any, data_dir: Path, workdir: Path, flags: list[str], minutes: float
) -> int:
    """Epochs that fit `minutes` at the speed this machine has now (it is shared, so the
    speed varies): a 12-step run measures seconds per step and the fixed costs."""
    probe = workdir / "calibration"
    shutil.rmtree(probe, ignore_errors=True)
    start = time.perf_counter()
    code = medcap(["train", "--data", str(data_dir), "--out", str(probe), "--max-steps", "12",
                   "--epochs", "1", *flags])  # fmt: skip
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"calibration run failed with exit code {code}")
    config = json.loads((probe / "config.json").read_text())
    rows = [json.loads(line) for line in (probe / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in rows if r["kind"] == "train"}
    # Logged at step 1 and step 10: the rate between them is the steady one.
    rate = train[10]["samples_per_s"] if 10 in train else train[max(train)]["samples_per_s"]
    step_s = config["train"]["batch_size"] / rate
    fixed_s = max(0.0, wall - 12 * step_s)  # model build, decoding, one validation
    # Margins: the machine is shared, so the speed drifts; a cut schedule ends at a high lr.
    steps = max(1.0, (minutes * 60 - 1.5 * fixed_s) / (1.25 * step_s))
    print(f"calibration: {step_s:.2f} s/step, {fixed_s:.0f} s fixed -> {steps:.0f} steps")
    return max(1, int(steps // config["steps_per_epoch"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="phantom cases (80/10/10 split)")
    parser.add_argument("--image-size", type=int, default=128, help="phantom pixels per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=3.0, help="hard cap on training time")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--model", default="medcap-tiny")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads (1: on this shared 2-core machine 2 threads ran 3x slower)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medcap_bench_quality"))
    parser.add_argument(
        "--split", default="valid,test", help="evaluation split(s), comma-separated"
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train flags")
    args = parser.parse_args(argv)

    from medcap.cli import main as medcap
    from medcap.data import build_phantoms, open_dataset
    from medcap.encoder import load_encoder

    data_dir = args.workdir / f"phantoms_{args.n}_{args.image_size}_{args.seed}"
    if not (data_dir / "data").is_dir():
        build_phantoms(data_dir, n=args.n, seed=args.seed, image_size=args.image_size)
    run_dir = args.workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    common = ["--model", args.model, "--device", "cpu", "--num-threads", str(args.threads)]
    for flag, value in (("--batch-size", args.batch_size), ("--lr", args.lr)):
        if value is not None:
            common += [flag, str(value)]
    common += args.extra
    epochs = args.epochs or calibrate_epochs(medcap, data_dir, args.workdir, common, args.minutes)
    flags = ["train", "--data", str(data_dir), "--out", str(run_dir), "--epochs", str(epochs),
             "--max-minutes", str(args.minutes), *common]  # fmt: skip
    load_before = _load()
    start = time.perf_counter()
    code = medcap(flags)
    train_s = time.perf_counter() - start
    load_after = _load()
    if code != 0:
        print(f"medcap train failed with exit code {code}", file=sys.stderr)
        return code
    config = json.loads((run_dir / "config.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    steps = json.loads((run_dir / "last.json").read_text())["step"]
    encoder = load_encoder(str(run_dir), device="cpu")
    dataset = open_dataset(data_dir)
    records = [r for split in args.split.split(",") for r in dataset.records(split)]
    quality = measure_quality(encoder, records, list(dataset.records("train")))
    result = {
        "command": "medcap " + " ".join(flags),
        "train_wall_s": round(train_s, 1),
        "steps": steps,
        "epochs_done": max((r["epoch"] for r in rows if r["kind"] == "eval"), default=0),
        "train_cases": config["train_cases"],
        "batch_size": config["train"]["batch_size"],
        "samples_per_s_median": float(
            np.median([r["samples_per_s"] for r in train_rows[1:]] or [0])
        ),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(load_after, 2),
        "cpu_count": os.cpu_count(),
        "eval_split": args.split,
        "quality": quality,
        "sketch_baseline_facts_md": SKETCH_BASELINE,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "phantom_quality.json").write_text(json.dumps(result, indent=2) + "\n")

    q = quality
    load = f"load avg {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores"
    print(f"\nmedcap train: {steps} steps in {train_s:.0f} s wall ({load}); "
          f"{q['pairs']} {args.split} pairs")  # fmt: skip
    print(f"{'metric':<22}{'value':>8}{'chance':>8}{'sketch':>8}")
    for k in (1, 5, 10):
        sketch = SKETCH_BASELINE.get(f"i2t_R@{k}")
        print(f"{f'image->text R@{k}':<22}{q[f'i2t_R@{k}']:>8.3f}{q[f'chance_R@{k}']:>8.3f}"
              f"{sketch if sketch is not None else '':>8}")  # fmt: skip
    for k in (1, 5, 10):
        print(f"{f'text->image R@{k}':<22}{q[f't2i_R@{k}']:>8.3f}{q[f'chance_R@{k}']:>8.3f}")
    print(f"{'median rank i2t/t2i':<22}{q['i2t_median_rank']:>4.0f}/{q['t2i_median_rank']:<3.0f}")
    print(f"top-1 neighbour attribute match (query: {args.split}; gallery: {args.split} or train)")
    print(f"{'attribute':<12}{'i2i':>7}{'i2t':>7}{'chance':>8}{'tr-i2i':>8}{'tr-i2t':>8}{'chance':>8}"
          f"{'sketch':>8}")  # fmt: skip
    for a in ATTRIBUTES:
        print(f"{a:<12}{q[f'i2i_top1_{a}']:>7.3f}{q[f'i2t_top1_{a}']:>7.3f}{q[f'chance_{a}']:>8.3f}"
              f"{q[f'gallery_i2i_top1_{a}']:>8.3f}{q[f'gallery_i2t_top1_{a}']:>8.3f}"
              f"{q[f'chance_gallery_{a}']:>8.3f}{SKETCH_BASELINE[a]:>8}")  # fmt: skip
    print(f"wrote {RESULTS / 'phantom_quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
