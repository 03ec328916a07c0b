"""Training throughput: `medcap train` against open_clip's own trainer, same model and batch.

Same model, per-GPU batch size and precision (bf16 autocast on a GPU), one process:
  open_clip  `open_clip_train.main --dataset-type synthetic` (blank images through its
             preprocessing in DataLoader workers); samples/s from the mean `Batch (t)` of
             its logged intervals (open_clip averages each interval)
  medcap     `train_encoder` on synthetic JPEG cases decoded once into a uint8 cache on the
             device, augmented there; samples/s from metrics.jsonl, whose clock is read after
             the loss is read back (a GPU synchronisation), over all logged intervals
The first logged intervals (warm-up, see timing.WARMUP_LOGS) are left out of both.

Goal (issue 3): medcap >= 0.9 x open_clip. Without CUDA `--device cuda` prints a note and
exits 0; `--device cpu --model medcap-tiny` runs both trainers briefly on the CPU.

    python benchmarks/bench_train.py [--model ViT-B-16] [--batch-size 256] [--steps 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from timing import medcap_rate, open_clip_rate

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_RATIO = 0.9
LOG_EVERY = 10  # optimizer steps per logged interval, both trainers

# open_clip_train in a child process that first registers medcap's model configs, so both
# trainers can build the same architecture (medcap-tiny included) from one name.
OPEN_CLIP_MAIN = (
    "import sys, open_clip; from medcap.encoder.spec import MODEL_CONFIG_DIR; "
    "open_clip.add_model_config(MODEL_CONFIG_DIR); "
    "from open_clip_train.main import main; main(sys.argv[1:])"
)


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


def run_open_clip(args: argparse.Namespace, logs: Path) -> float:
    """Samples/s of open_clip_train on the same model, batch and precision."""
    precision = "amp_bf16" if args.device.startswith("cuda") else "fp32"
    command = [
        sys.executable, "-c", OPEN_CLIP_MAIN, "--dataset-type", "synthetic",
        "--train-num-samples", str(args.steps * args.batch_size),
        "--batch-size", str(args.batch_size),
        "--model", args.model, "--epochs", "1", "--workers", str(args.workers),
        "--precision", precision, "--lr", "5e-4", "--warmup", "10", "--logs", str(logs),
        "--name", "open_clip", "--log-every-n-steps", str(LOG_EVERY), "--report-to", "",
        "--save-frequency", "0", "--zeroshot-frequency", "0", "--val-frequency", "0",
    ]  # fmt: skip
    env = dict(os.environ)
    if not args.device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # open_clip_train takes CUDA whenever it sees one
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    text = done.stdout + done.stderr
    log_file = logs / "open_clip" / "out.log"
    if log_file.exists():
        text += log_file.read_text()
    if done.returncode != 0:
        print(text[-3000:], file=sys.stderr)
        raise SystemExit(f"open_clip_train failed (exit {done.returncode})")
    return open_clip_rate(text, args.batch_size)


def run_medcap(args: argparse.Namespace, out: Path) -> float:
    """Samples/s of `train_encoder` on synthetic JPEG cases (cached on the device)."""
    from medcap.config import DEFAULTS
    from medcap.train.loop import train_encoder

    gpu = args.device.startswith("cuda")
    cfg = dataclasses.replace(
        DEFAULTS.train, epochs=1, batch_size=args.batch_size, warmup_steps=10, lr=5e-4,
        precision="bf16" if gpu else "fp32", log_every_steps=LOG_EVERY,
        checkpoint_every_steps=10**9, num_workers=args.workers, cache_max_gb=16.0,
        eval_max_items=256, device=args.device,
    )  # fmt: skip
    side = 224 if gpu else 64
    data = _SyntheticCases(args.steps * args.batch_size, min(256, args.batch_size * 2), side)
    train_encoder(data, out, model=args.model, cfg=cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if gpu:
        import torch

        torch.cuda.empty_cache()
    return medcap_rate(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=256, help="per GPU")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for train.json")
    args = parser.parse_args(argv)

    import torch

    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        print("no CUDA device: bench_train compares GPU training throughput; nothing was measured")
        return 0
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        medcap = run_medcap(args, Path(tmp) / "medcap")
        open_clip = run_open_clip(args, Path(tmp) / "open_clip_logs")
    out = {
        "device": torch.cuda.get_device_name(torch.device(args.device)) if gpu else "cpu",
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "precision": "bf16 autocast" if gpu else "fp32",
        "samples_per_s": {"medcap": round(medcap, 1), "open_clip": round(open_clip, 1)},
        "ratio": round(medcap / open_clip, 3),
        "goal_ratio": GOAL_RATIO,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.model}, batch {args.batch_size}, {out['device']}")
    print(f"{'trainer':<12}{'samples/s':>12}")
    print(f"{'medcap':<12}{medcap:>12.0f}")
    print(f"{'open_clip':<12}{open_clip:>12.0f}")
    print(f"ratio {out['ratio']:.2f} (goal >= {GOAL_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
