"""ViT-B-16 image embedding throughput on a GPU, end to end from encoded bytes to vectors.

Three measurements, bf16 autocast, random-init ViT-B-16 (speed does not depend on weights):
  model      preprocessed pixels already on the GPU -> normalised vectors (the ceiling)
  pillow     JPEG bytes -> Pillow decode (JPEG draft mode) in DataLoader workers -> GPU
             (`Encoder.encode_cases`, what `medcap index build` runs)
  nvjpeg     JPEG bytes -> torchvision decode_jpeg on CUDA + batched GPU resize, decoding
             the next batch while the model runs (`Encoder.encode_image_bytes`)
plus `nvjpeg-png`: the same path on PNG bytes (decoded on the CPU by torchvision).

Goal (issue 3): at least 4,000 images/s end to end on an H100 (model alone: ~6,600).
Exits cleanly with a message where CUDA is not available.

    .venv/bin/python benchmarks/bench_encoder.py [--n 8192] [--batch-size 512] [--workers 15]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


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


def _timed(fn: Any, n: int, sync: Any) -> float:
    fn()  # warm-up at full size: kernels, cuDNN/cuBLAS plans, worker start
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="images per timed pass")
    parser.add_argument("--side", type=int, default=512, help="source image side in pixels")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", default="ViT-B-16")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: bench_encoder measures GPU throughput; nothing was measured")
        return 0
    from medcap.config import DEFAULTS, replace_set
    from medcap.encoder import load_encoder
    from medcap.types import ImageRef, Record

    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = replace_set(DEFAULTS.encoder, batch_size=args.batch_size, num_workers=args.workers)
    encoder = load_encoder(args.model, device="cuda", precision="bf16", cfg=cfg)
    unique = 256
    jpegs = _synthetic_images(unique, args.side, "JPEG")
    pngs = _synthetic_images(unique, args.side, "PNG")
    jpeg_blobs = [jpegs[i % unique] for i in range(args.n)]
    png_blobs = [pngs[i % unique] for i in range(args.n // 4)]
    records = [
        Record(f"img{i}", ImageRef(path=f"img{i}.jpg", data=b), "x")
        for i, b in enumerate(jpeg_blobs)
    ]
    sync = torch.cuda.synchronize
    pixels = torch.randn(args.batch_size, 3, encoder.input_size, encoder.input_size, device="cuda")

    def model_only() -> None:
        for _ in range(args.n // args.batch_size):
            encoder._forward(encoder.model.encode_image, pixels)

    results = {
        "model": _timed(model_only, args.n // args.batch_size * args.batch_size, sync),
        "pillow": _timed(lambda: encoder.encode_cases(records), args.n, sync),
        "nvjpeg": _timed(lambda: encoder.encode_image_bytes(jpeg_blobs), args.n, sync),
        "nvjpeg-png": _timed(lambda: encoder.encode_image_bytes(png_blobs), len(png_blobs), sync),
    }
    out = {
        "device": torch.cuda.get_device_name(),
        "model": args.model,
        "precision": "bf16 autocast",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "source_side_px": args.side,
        "jpeg_kb": round(sum(map(len, jpegs)) / unique / 1024, 1),
        "images_per_s": {k: round(v, 1) for k, v in results.items()},
        "goal_images_per_s": 4000,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "encoder.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.model} on {out['device']}, batch {args.batch_size}, {args.side}px sources")
    print(f"{'path':<14}{'images/s':>10}")
    for name, value in results.items():
        print(f"{name:<14}{value:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
