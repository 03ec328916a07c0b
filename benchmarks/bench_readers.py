"""Reader throughput: images per second decoded and converted to model input, on one core.

For 512x512 PNG and JPEG images (phantoms rendered at 512 px, so the content compresses
like radiology figures, not like noise), in layout (a) parquet (bytes in the file) and
layout (c) image files + CSV, this times the whole path a training or indexing run takes
per image: read the record, decode (`medcap.data.load_image`, any mode -> RGB), then
resize the short side to 224 (bicubic), centre-crop 224x224 and normalise with the CLIP
mean/std into a float32 (3, 224, 224) array, as open_clip's preprocessing does (done
here with PIL and numpy because `medcap.data` does not import torch). JPEG is also timed
with `draft_size=224` (DCT-domain downscaling while decoding).

One process, one thread (OMP/MKL threads pinned to 1). Prints a table and writes
benchmarks/results/readers.json.

    .venv/bin/python benchmarks/bench_readers.py [--n 200] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from PIL import Image  # noqa: E402

from medcap.data import load_image, open_dataset  # noqa: E402
from medcap.data.phantoms.render import render_case  # noqa: E402
from medcap.data.phantoms.spec import sample_case  # noqa: E402

MODEL_SIZE = 224
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
RESULTS = Path(__file__).parent / "results" / "readers.json"


def to_model_input(image: Image.Image) -> NDArray[np.float32]:
    """Short side to 224 (bicubic), centre crop, [0, 1], CLIP-normalise -> (3, 224, 224)."""
    width, height = image.size
    scale = MODEL_SIZE / min(width, height)
    resized = image.resize(
        (max(MODEL_SIZE, round(width * scale)), max(MODEL_SIZE, round(height * scale))),
        Image.Resampling.BICUBIC,
    )
    left = (resized.width - MODEL_SIZE) // 2
    top = (resized.height - MODEL_SIZE) // 2
    crop = resized.crop((left, top, left + MODEL_SIZE, top + MODEL_SIZE))
    pixels = np.asarray(crop, dtype=np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(((pixels - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))


def make_images(n: int, size: int) -> list[Image.Image]:
    """`n` phantom images at `size` px (mode L or RGB, as generated)."""
    images = []
    for i in range(n):
        rng = np.random.default_rng([1234, i])
        images.append(render_case(sample_case(rng), size, rng))
    return images


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def write_layouts(root: Path, images: list[Image.Image], fmt: str) -> tuple[Path, Path]:
    """The same images as a layout (a) parquet dataset and a layout (c) folder + CSV."""
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    blobs = [encode(image, fmt) for image in images]
    ids = [f"bench_{i:05d}" for i in range(len(blobs))]
    parquet_root = root / f"parquet_{fmt.lower()}"
    (parquet_root / "data").mkdir(parents=True)
    table = pa.table(
        {
            "image": [{"bytes": b, "path": i + suffix} for b, i in zip(blobs, ids, strict=True)],
            "image_id": ids,
            "caption": ["benchmark image"] * len(ids),
            "cui": [["C0040405"]] * len(ids),
        }
    )
    pq.write_table(table, parquet_root / "data" / "train-00000-of-00001.parquet")
    folder = root / f"folder_{fmt.lower()}"
    (folder / "images").mkdir(parents=True)
    with open(folder / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "image_id", "caption"])
        for blob, image_id in zip(blobs, ids, strict=True):
            (folder / "images" / f"{image_id}{suffix}").write_bytes(blob)
            writer.writerow([f"images/{image_id}{suffix}", image_id, "benchmark image"])
    return parquet_root, folder


def time_pass(source: Path, draft: bool) -> tuple[int, float, float]:
    """One full pass: records -> decode -> model input. Returns (images, CPU s, wall s).

    CPU time of this one-threaded process is the one-core cost even on a busy machine;
    wall time is reported beside it.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    dataset = open_dataset(source)
    count = 0
    checksum = 0.0
    for record in dataset.records("train"):
        image = load_image(record.image, draft_size=MODEL_SIZE if draft else None)
        checksum += float(to_model_input(image)[0, 0, 0])
        count += 1
    assert np.isfinite(checksum)
    return count, time.process_time() - cpu_start, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images per format")
    parser.add_argument("--size", type=int, default=512, help="stored image size in pixels")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes per setting (median reported)"
    )
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        images = make_images(args.n, args.size)
        render_s = time.process_time() - start
        modes = {m: sum(im.mode == m for im in images) for m in ("L", "RGB")}
        for fmt in ("PNG", "JPEG"):
            parquet_root, folder = write_layouts(Path(tmp), images, fmt)
            mean_kb = np.mean([len(encode(im, fmt)) for im in images[:20]]) / 1024
            settings = [(False, "full decode")] + ([(True, "draft 224")] if fmt == "JPEG" else [])
            for layout, source in (("parquet (a)", parquet_root), ("files+CSV (c)", folder)):
                for draft, label in settings:
                    time_pass(source, draft)  # warm-up: page cache, imports
                    rates, wall_rates = [], []
                    for _ in range(args.repeats):
                        count, cpu_s, wall_s = time_pass(source, draft)
                        rates.append(count / cpu_s)
                        wall_rates.append(count / wall_s)
                    rows.append(
                        {
                            "format": fmt,
                            "layout": layout,
                            "decode": label,
                            "images": args.n,
                            "stored_px": args.size,
                            "mean_kb": round(float(mean_kb), 1),
                            "images_per_cpu_s": round(statistics.median(rates), 1),
                            "ms_cpu_per_image": round(1000.0 / statistics.median(rates), 2),
                            "images_per_wall_s": round(statistics.median(wall_rates), 1),
                        }
                    )

    print(
        f"reader throughput, one core: {args.n} phantom images of {args.size}x{args.size} "
        f"(L {modes['L']}, RGB {modes['RGB']}) -> float32 (3, {MODEL_SIZE}, {MODEL_SIZE}), "
        f"median of {args.repeats} passes"
    )
    print(
        f"{'format':<6} {'layout':<14} {'decode':<12} {'KB/img':>7} {'img/cpu-s':>10} "
        f"{'ms/img':>8} {'img/wall-s':>11}"
    )
    for r in rows:
        print(
            f"{r['format']:<6} {r['layout']:<14} {r['decode']:<12} {r['mean_kb']:>7} "
            f"{r['images_per_cpu_s']:>10} {r['ms_cpu_per_image']:>8} {r['images_per_wall_s']:>11}"
        )
    print(f"(phantom rendering at {args.size} px: {args.n / render_s:.0f} images per CPU second)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "readers",
                "threads": 1,
                "model_input": [3, MODEL_SIZE, MODEL_SIZE],
                "python": sys.version.split()[0],
                "pillow": Image.__version__,
                "machine": platform.processor() or platform.machine(),
                "phantom_render_images_per_cpu_s": round(args.n / render_s, 1),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
