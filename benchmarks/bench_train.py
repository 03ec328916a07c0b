"""Training throughput on a GPU: `medcap train` against open_clip's own trainer.

Same model, per-GPU batch size and precision (bf16 autocast), one GPU, in one run:
  open_clip  `python -m open_clip_train.main --dataset-type synthetic` (blank images through
             its preprocessing in DataLoader workers), samples/s parsed from its log
  medcap     `train_encoder` on synthetic JPEG cases decoded once into a GPU-resident uint8
             cache, augmented on the GPU; samples/s from metrics.jsonl
The first logged intervals (warm-up) are left out of both medians.

Goal (issue 3): medcap >= 0.9 x open_clip. Exits cleanly where CUDA is not available.

    .venv/bin/python benchmarks/bench_train.py [--model ViT-B-16] [--batch-size 256] [--steps 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_LOGS = 2


class _SyntheticCases:
    """An in-memory dataset (the reader protocol train_encoder uses): JPEG cases."""

    name = "synthetic"

    def __init__(self, n_train: int, n_valid: int, side: int) -> None:
        import numpy as np
        from PIL import Image

        from medcap.types import ImageRef, Record

        rng = np.random.default_rng(0)
        blobs = []
        for _ in range(64):
            pixels = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).resize((side, side), Image.BICUBIC).save(
                buffer, "JPEG", quality=90
            )
            blobs.append(buffer.getvalue())
        self._records = {
            split: [
                Record(
                    f"{split}{i}",
                    ImageRef(path=f"{split}{i}.jpg", data=blobs[i % 64]),
                    f"case {i} {split}",
                    split=split,
                )
                for i in range(n)
            ]
            for split, n in (("train", n_train), ("valid", n_valid))
        }

    def splits(self) -> list[str]:
        return list(self._records)

    def records(self, split: str) -> Any:
        return iter(self._records[split])

    def fingerprint(self) -> str:
        return "synthetic"


def _median_after_warmup(values: list[float]) -> float:
    values = values[WARMUP_LOGS:] or values
    return float(statistics.median(values)) if values else float("nan")


def run_open_clip(args: argparse.Namespace, logs: Path) -> float:
    command = [
        sys.executable, "-m", "open_clip_train.main", "--dataset-type", "synthetic",
        "--train-num-samples", str(args.steps * args.batch_size),
        "--batch-size", str(args.batch_size),
        "--model", args.model, "--epochs", "1", "--workers", str(args.workers),
        "--precision", "amp_bf16", "--lr", "5e-4", "--warmup", "10", "--logs", str(logs),
        "--name", "open_clip", "--log-every-n-steps", "10", "--report-to", "",
        "--save-frequency", "0", "--zeroshot-frequency", "0", "--val-frequency", "0",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    text = done.stdout + done.stderr
    log_file = logs / "open_clip" / "out.log"
    if log_file.exists():
        text += log_file.read_text()
    if done.returncode != 0:
        print(text[-3000:], file=sys.stderr)
        raise SystemExit(f"open_clip_train failed (exit {done.returncode})")
    rates = [float(m) for m in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s,", text)]
    return _median_after_warmup(rates)


def run_medcap(args: argparse.Namespace, out: Path) -> float:
    import torch

    from medcap.config import DEFAULTS
    from medcap.train.loop import train_encoder

    cfg = dataclasses.replace(
        DEFAULTS.train, epochs=1, batch_size=args.batch_size, warmup_steps=10, lr=5e-4,
        precision="bf16", log_every_steps=10, checkpoint_every_steps=10**9,
        num_workers=args.workers, cache_max_gb=16.0, eval_max_items=256, device="cuda",
    )  # fmt: skip
    data = _SyntheticCases(args.steps * args.batch_size, 256, 224)
    train_encoder(data, out, model=args.model, cfg=cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if r["kind"] == "train" and r["step"] > 1]
    torch.cuda.empty_cache()
    return _median_after_warmup(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=256, help="per GPU")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: bench_train compares GPU training throughput; nothing was measured")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        medcap = run_medcap(args, Path(tmp) / "medcap")
        open_clip = run_open_clip(args, Path(tmp) / "open_clip_logs")
    out = {
        "device": torch.cuda.get_device_name(),
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "precision": "bf16 autocast",
        "samples_per_s": {"medcap": round(medcap, 1), "open_clip": round(open_clip, 1)},
        "ratio": round(medcap / open_clip, 3),
        "goal_ratio": 0.9,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.model}, batch {args.batch_size}, {out['device']}")
    print(f"{'trainer':<12}{'samples/s':>12}")
    print(f"{'medcap':<12}{medcap:>12.0f}")
    print(f"{'open_clip':<12}{open_clip:>12.0f}")
    print(f"ratio {out['ratio']:.2f} (goal >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
