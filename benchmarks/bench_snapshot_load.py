"""Loading a BiomedCLIP-shaped open_clip snapshot at its real size from a local folder, offline.

Writes the mirrored snapshot once (ViT-B/16 + BERT-base, ~196M parameters, random weights,
tests.support.mirror_repos), then, in a fresh process each time (so imports and peak memory
are the loader's own): load the encoder with the fingerprint computed (the first load) or
read from medcap's cache (the second), and embed --images images and --texts captions on the
CPU. Prints the table and writes benchmarks/results/snapshot_load.json.

    .venv/bin/python benchmarks/bench_snapshot_load.py [--images 8] [--texts 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "snapshot_load.json"

CHILD = """
import json, resource, sys, time
start = time.perf_counter()
import numpy as np
from PIL import Image
from medcap.encoder import load_encoder
imported = time.perf_counter()
encoder = load_encoder(sys.argv[1], device="cpu", precision="fp32")
fingerprint = encoder.fingerprint
loaded = time.perf_counter()
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 256, (400, 360, 3), dtype=np.uint8))
          for _ in range(int(sys.argv[2]))]
encoder.encode_images(images, batch_size=len(images))
embedded_images = time.perf_counter()
encoder.encode_texts(["Axial CT of the chest showing a nodule."] * int(sys.argv[3]))
done = time.perf_counter()
print(json.dumps({
    "import_s": imported - start, "load_s": loaded - imported,
    "embed_images_s": embedded_images - loaded, "embed_texts_s": done - embedded_images,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    "parameters": sum(p.numel() for p in encoder.model.parameters()),
}))
"""


def _child(snapshot: Path, images: int, texts: int, cache: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MEDCAP_CACHE_DIR": cache}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(snapshot), str(images), str(texts)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--texts", type=int, default=8)
    args = p.parse_args()
    if str(REPO) not in sys.path:  # the mirror builders are test support, not medcap
        sys.path.insert(0, str(REPO))
    from tests.support.mirror_repos import (
        BIOMEDBERT_ID,
        id_folder,
        write_biomedbert,
        write_biomedclip,
    )
    from tests.support.mirror_tokenizers import phantom_captions

    results: dict[str, Any] = {
        "images": args.images,
        "texts": args.texts,
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
        texts = phantom_captions(200)
        write_biomedclip(
            snapshot, write_biomedbert(id_folder(snapshot, BIOMEDBERT_ID), texts, "real"), texts,
            size="real",
        )  # fmt: skip
        results["weights_gb"] = (snapshot / "open_clip_pytorch_model.bin").stat().st_size / 1e9
        cache = str(Path(tmp) / "cache")
        results["first_load"] = _child(snapshot, args.images, args.texts, cache)
        results["cached_fingerprint"] = _child(snapshot, args.images, args.texts, cache)
    print(f"weights {results['weights_gb']:.2f} GB, "
          f"{results['first_load']['parameters'] / 1e6:.0f}M parameters")  # fmt: skip
    for name in ("first_load", "cached_fingerprint"):
        r = results[name]
        print(
            f"{name:<19} import {r['import_s']:.1f} s  load {r['load_s']:.1f} s  "
            f"{args.images} images {r['embed_images_s']:.2f} s  {args.texts} texts "
            f"{r['embed_texts_s']:.2f} s  peak RSS {r['peak_rss_gb']:.2f} GB"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
