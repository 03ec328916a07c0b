"""Speed of medcap's evaluation code: rank metrics, COCO caption metrics, tokenisation.

Runs on synthetic data (no model): random unit embeddings for retrieval ranks at ROCOv2
test scale, and phantom-style captions for caption metrics, compared with pycocoevalcap's
scorers when it is installed. Prints a table and writes benchmarks/results/evaluation.json.

    .venv/bin/python benchmarks/bench_evaluation.py [--gallery 2000 9927] [--captions 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np

from medcap.evaluation.coco_metrics import bleu, cider_d, rouge_l
from medcap.evaluation.tokenize import ptb_tokenize
from medcap.retrieval.evaluate import rank_direction

RESULTS = Path(__file__).parent / "results" / "evaluation.json"


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_ranks(sizes: list[int], dim: int) -> list[dict[str, float]]:
    """Both directions' ranks and top-1 items of an n x n gallery of random unit vectors."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        img = rng.standard_normal((n, dim)).astype(np.float32)
        txt = img + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
        _, t_i2t = _timed(rank_direction, img, txt)
        _, t_t2i = _timed(rank_direction, txt, img)
        keys = rng.integers(0, n // 2, size=n)
        _, t_dup = _timed(rank_direction, img, txt, keys=keys)
        rows.append(
            {
                "gallery": n,
                "dim": dim,
                "both_directions_s": t_i2t + t_t2i,
                "same_caption_one_direction_s": t_dup,
                "queries_per_s": 2 * n / (t_i2t + t_t2i),
            }
        )
    return rows


def _captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    modality = ["Axial CT", "Coronal T2-weighted MRI", "Ultrasound", "Chest X-ray", "PET/CT"]
    finding = ["a 2.5 cm nodule", "a 3cm mass", "free fluid", "a fracture", "an abscess (arrow)"]
    where = ["in the right upper lobe", "of the left kidney", "at L4-L5", "of the liver", ""]
    return [
        f"{rng.choice(modality)} of the patient showing {rng.choice(finding)} {rng.choice(where)}."
        for _ in range(n)
    ]


def bench_captions(n: int) -> dict[str, float]:
    """Tokenise and score n caption pairs; pycocoevalcap's scorers on the same tokens."""
    refs_raw, cands_raw = _captions(n, 0), _captions(n, 1)
    tok_refs, t_tok = _timed(lambda: [[ptb_tokenize(r)] for r in refs_raw])
    cands = [ptb_tokenize(c) for c in cands_raw]
    row: dict[str, float] = {"captions": n, "ptb_tokenize_per_s": n / t_tok}
    _, row["medcap_bleu_s"] = _timed(bleu, cands, tok_refs)
    _, row["medcap_rouge_l_s"] = _timed(rouge_l, cands, tok_refs)
    _, row["medcap_cider_d_s"] = _timed(cider_d, cands, tok_refs)
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return row
    gts = {i: r for i, r in enumerate(tok_refs)}
    res = {i: [c] for i, c in enumerate(cands)}
    _, row["coco_bleu_s"] = _timed(Bleu(4).compute_score, gts, res, verbose=0)
    _, row["coco_rouge_l_s"] = _timed(Rouge().compute_score, gts, res)
    _, row["coco_cider_s"] = _timed(Cider().compute_score, gts, res)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, nargs="+", default=[2000, 9927])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--captions", type=int, default=2000)
    args = parser.parse_args()
    ranks = bench_ranks(args.gallery, args.dim)
    captions = bench_captions(args.captions)
    print(f"{'gallery':>8} {'dim':>5} {'both dirs s':>12} {'same-caption s':>15} {'queries/s':>10}")
    for r in ranks:
        print(
            f"{r['gallery']:>8} {r['dim']:>5} {r['both_directions_s']:>12.3f} "
            f"{r['same_caption_one_direction_s']:>15.3f} {r['queries_per_s']:>10.0f}"
        )
    print()
    for key, value in captions.items():
        print(f"{key:<22} {value:>10.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "ranks": ranks,
        "captions": [captions],
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
