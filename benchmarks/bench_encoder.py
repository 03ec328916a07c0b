"""Image embedding throughput, end to end from encoded bytes to vectors (ViT-B-16 on a GPU).

Measurements, bf16 autocast on a GPU, random-init weights (speed does not depend on them):
  model               preprocessed pixels already on the device -> vectors (the ceiling)
  jpeg bytes          JPEG bytes -> nvjpeg decode + batched resize on the device -> vectors,
                      the next batch decoding while the model runs (`encode_image_bytes`)
  png bytes           the same path on PNG bytes (decoded on the CPU by torchvision)
  cases, device       what `medcap index build` runs on a GPU (`encode_cases`): the JPEG
                      path above plus tokenizing and embedding every caption
  cases, Pillow       `encode_cases` with Pillow decoding in DataLoader workers instead; the
                      same work (images and captions), the workers already started
Every figure follows a full-size untimed warm-up and is read after a GPU synchronisation.

Goal (issue 3): at least 4,000 images/s end to end (jpeg bytes) on an H100; the model alone
did ~6,600. Without CUDA `--device cuda` prints a note and exits 0; `--device cpu --model
medcap-tiny` runs every path on the CPU at a small size.

    python benchmarks/bench_encoder.py [--n 8192] [--batch-size 512] [--workers 15]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from timing import timed_rate

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_IMAGES_PER_S = 4000


def _synthetic_images(n_unique: int, side: int, fmt: str) -> list[bytes]:
    """Smooth random images with shapes (compress like scans, not like noise)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(n_unique):
        base = rng.integers(0, 255, (side // 16, side // 16), dtype=np.uint8)
        image = Image.fromarray(base).resize((side, side), Image.BICUBIC).convert("RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y, r = (int(v) for v in rng.integers(0, side, 3) // (1, 1, 4))
            draw.ellipse(
                [x - r, y - r, x + r, y + r],
                outline=tuple(int(c) for c in rng.integers(0, 255, 3)),
                width=3,
            )
        image = image.filter(ImageFilter.GaussianBlur(1))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        blobs.append(buffer.getvalue())
    return blobs


def measure(args: argparse.Namespace) -> dict[str, float]:
    """images/s of each path (see the module docstring)."""
    import torch

    from medcap.config import DEFAULTS, replace_set
    from medcap.encoder import load_encoder
    from medcap.types import ImageRef, Record

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    cfg = replace_set(DEFAULTS.encoder, batch_size=args.batch_size, num_workers=args.workers)
    encoder = load_encoder(
        args.model, device=args.device, precision="bf16" if gpu else "fp32", cfg=cfg
    )
    unique = min(256, args.n)
    jpegs = _synthetic_images(unique, args.side, "JPEG")
    pngs = _synthetic_images(unique, args.side, "PNG")
    jpeg_blobs = [jpegs[i % unique] for i in range(args.n)]
    png_blobs = [pngs[i % unique] for i in range(max(1, args.n // 4))]
    records = [
        Record(f"img{i}", ImageRef(path=f"img{i}.jpg", data=b), f"Axial CT of case {i}.")
        for i, b in enumerate(jpeg_blobs)
    ]

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize(device)

    size = encoder.input_size
    pixels = torch.randn(args.batch_size, 3, size, size, device=device)
    model_batches = max(1, args.n // args.batch_size)

    def model_only() -> None:
        for _ in range(model_batches):
            encoder._forward(encoder.model.encode_image, pixels)

    def cases(decode: str) -> Any:
        def run() -> None:
            encoder.cfg = dataclasses.replace(cfg, image_decode=decode)
            encoder.encode_cases(records)

        return run

    results = {
        "model": timed_rate(model_only, model_batches * args.batch_size, sync),
        "jpeg bytes": timed_rate(lambda: encoder.encode_image_bytes(jpeg_blobs), args.n, sync),
        "png bytes": timed_rate(
            lambda: encoder.encode_image_bytes(png_blobs), len(png_blobs), sync
        ),
        "cases, device": timed_rate(cases("device"), args.n, sync),
        "cases, Pillow": timed_rate(cases("workers"), args.n, sync),
    }
    encoder.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="images per timed pass")
    parser.add_argument("--side", type=int, default=512, help="source image side in pixels")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for encoder.json")
    args = parser.parse_args(argv)

    import torch

    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        print("no CUDA device: bench_encoder measures GPU throughput; nothing was measured")
        return 0
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    results = measure(args)
    out = {
        "device": torch.cuda.get_device_name(torch.device(args.device)) if gpu else "cpu",
        "model": args.model,
        "precision": "bf16 autocast" if gpu else "fp32",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "source_side_px": args.side,
        "images": args.n,
        "images_per_s": {k: round(v, 1) for k, v in results.items()},
        "goal_images_per_s": GOAL_IMAGES_PER_S,
        "goal_path": "jpeg bytes",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.model} on {out['device']}, batch {args.batch_size}, {args.side}px sources")
    print(f"{'path':<16}{'images/s':>10}")
    for name, value in results.items():
        print(f"{name:<16}{value:>10.0f}")
    print(f"goal: jpeg bytes >= {GOAL_IMAGES_PER_S} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
