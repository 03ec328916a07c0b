"""Caption generation benchmarks: consensus quality on phantoms, and Qwen2-VL speed on a GPU.

quality (default, CPU, a few minutes): phantoms -> medcap-tiny CLIP trained from scratch ->
index of the train split -> the batch captioning run (`medcap caption --data ... --out`) on
the test split with the consensus backend -> caption metrics (what `medcap eval captions`
computes), next to captions drawn at random from the training set and the nearest
neighbour's caption. Also: how often the chosen caption comes from a case with the query's
true modality / region / finding (phantoms know them).

speed (`--mode speed`, CUDA): the Qwen2-VL-2B architecture with random weights (generation
speed does not depend on their values), 448x448 images (256 visual tokens), 128 new tokens,
each setting after a full-length warm-up: seed 000's way (one image per `generate` call)
and medcap's batched pipeline from image files (decode, GPU preprocessing, generation,
detokenising), with batch size, peak GPU memory and a time breakdown. Without CUDA it says
so and exits 0; `--arch tiny --device cpu` runs the same code path on a tiny model.

    .venv/bin/python benchmarks/bench_generation.py                # quality
    .venv/bin/python benchmarks/bench_generation.py --mode speed   # needs CUDA
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
GOAL_S_PER_IMAGE = 0.012  # issue 3: Qwen2-VL-2B RAG captions, 128 new tokens, one GPU
ATTRIBUTES = ("modality", "region", "finding")
SHOWN = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


# ----------------------------------------------------------------------------- quality


def _train_encoder(phantoms: Path, out: Path, epochs: int) -> Path:
    from medcap.config import DEFAULTS
    from medcap.train.loop import train_encoder

    cfg = replace(
        DEFAULTS.train,
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        warmup_steps=20,
        checkpoint_every_steps=100_000,
        device="cpu",
        seed=0,
    )
    return train_encoder(phantoms, out, model="medcap-tiny", cfg=cfg).best_checkpoint


def _attribute_agreement(
    chosen_ids: Sequence[str | None], query_ids: Sequence[str], cases: dict[str, Any]
) -> dict[str, float]:
    """Share of queries whose chosen caption comes from a case with the same attribute."""
    out = {}
    for name in ATTRIBUTES:
        hits = [
            cases[c].extra.get(name) == cases[q].extra.get(name)
            for c, q in zip(chosen_ids, query_ids, strict=True)
            if c is not None and name in cases[q].extra
        ]
        out[name] = sum(hits) / len(hits) if hits else float("nan")
    return out


def run_quality(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Consensus captions vs random training captions on a phantom test split."""
    import csv

    from medcap.config import DEFAULTS
    from medcap.data import build_phantoms, open_dataset
    from medcap.encoder import load_encoder
    from medcap.evaluation.caption_metrics import evaluate_caption_results, score_captions
    from medcap.index import build_index
    from medcap.runs.caption import BatchRun, caption_split

    # Stages whose artifacts are already in --workdir are reused (a rerun only re-captions).
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    phantoms = work / "phantoms"
    if not (phantoms / "data").exists():
        build_phantoms(phantoms, n=args.n, seed=args.seed, image_size=64)
    dataset = open_dataset(phantoms)
    timings["phantoms_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    checkpoint = work / "encoder" / "best.pt"
    if not checkpoint.exists():
        checkpoint = _train_encoder(phantoms, work / "encoder", args.epochs)
    timings["train_encoder_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if not (work / "index" / "manifest.json").exists():
        encoder = load_encoder(str(checkpoint), device="cpu")
        build_index(
            dataset.records("train"),
            encoder,
            work / "index",
            DEFAULTS.index,
            dataset_fingerprint=dataset.fingerprint(),
        )
    timings["build_index_s"] = time.perf_counter() - t0

    cfg = replace(
        DEFAULTS.generation,
        backend="consensus",
        k=args.k,
        device="cpu",
        search_mode=args.search_mode,
    )
    out_csv = work / "results.csv"
    run = BatchRun(
        data=str(phantoms), split="test", index_dir=str(work / "index"), out=str(out_csv)
    )
    t0 = time.perf_counter()
    summary = caption_split(run, cfg, overwrite=True, progress=False)
    timings["caption_test_s"] = time.perf_counter() - t0

    report = evaluate_caption_results(out_csv, DEFAULTS.eval, bertscore=False)
    with out_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    train = list(dataset.records("train"))
    test = list(dataset.records("test"))
    cases = {r.image_id: r for r in [*train, *test]}
    by_id = {row["image_id"]: row for row in rows}
    query_ids = [r.image_id for r in test if r.image_id in by_id]
    refs = [cases[q].caption for q in query_ids]

    rng = random.Random(args.seed)
    random_ids = [rng.choice(train).image_id for _ in query_ids]
    nearest_ids = [by_id[q]["neighbour_ids"].split(";")[0] for q in query_ids]
    chosen_ids = []
    for q in query_ids:
        row = by_id[q]
        neighbours = row["neighbour_ids"].split(";")
        chosen_ids.append(
            next(
                (n for n in neighbours if cases[n].caption.strip() == row["generated_caption"]),
                None,
            )
        )

    methods = {
        "consensus (medcap caption)": report["metrics"],
        "nearest neighbour's caption": score_captions(
            refs, [cases[i].caption for i in nearest_ids]
        ),
        "random training caption": score_captions(refs, [cases[i].caption for i in random_ids]),
    }
    agreement = {
        "consensus (medcap caption)": _attribute_agreement(chosen_ids, query_ids, cases),
        "nearest neighbour's caption": _attribute_agreement(nearest_ids, query_ids, cases),
        "random training caption": _attribute_agreement(random_ids, query_ids, cases),
    }
    return {
        "phantoms": {"n": args.n, "seed": args.seed, "train": len(train), "test": len(test)},
        "k": args.k,
        "search_mode": args.search_mode,
        "encoder_epochs": args.epochs,
        "captioned": summary.written + summary.resumed,
        "caption_images_per_s": summary.images_per_s,
        "metrics": methods,
        "metrics_unavailable": report["unavailable"],
        "attribute_agreement": agreement,
        "timings_s": timings,
    }


def print_quality(result: dict[str, Any]) -> None:
    shown = [m for m in SHOWN if any(m in v for v in result["metrics"].values())]
    print(
        f"\nConsensus captioning on phantoms: {result['phantoms']['test']} test queries, "
        f"index of {result['phantoms']['train']} training cases, k={result['k']}, "
        f"search {result['search_mode']}"
    )
    header = f"{'method':<30}" + "".join(f"{m:>9}" for m in shown)
    header += "".join(f"{'same ' + a:>15}" for a in ATTRIBUTES)
    print(header)
    print("-" * len(header))
    for name, metrics in result["metrics"].items():
        line = f"{name:<30}" + "".join(f"{metrics.get(m, float('nan')):>9.3f}" for m in shown)
        agree = result["attribute_agreement"][name]
        line += "".join(f"{agree[a]:>15.2f}" for a in ATTRIBUTES)
        print(line)
    for name, why in result["metrics_unavailable"].items():
        print(f"  ({name} not computed: {why})")
    t = result["timings_s"]
    print(
        "  times: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items())
        + f"; captioning {result['caption_images_per_s']:.1f} images/s"
    )


# ----------------------------------------------------------------------------- speed


def _write_images(folder: Path, count: int, size: int) -> list[Path]:
    """Phantom renders saved as JPEG files of size x size pixels (the benchmark's inputs)."""
    from medcap.data import build_phantoms, open_dataset
    from medcap.data.images import load_image

    source = build_phantoms(folder / "phantoms", n=max(count, 20), seed=1, image_size=size)
    dataset = open_dataset(source)
    paths = []
    records = [r for split in dataset.splits() for r in dataset.records(split)]
    for i in range(count):
        path = folder / f"img{i:05d}.jpg"
        load_image(records[i % len(records)].image).save(path, quality=90)
        paths.append(path)
    return paths


def _prompts(count: int, k: int, seed: int) -> list[Any]:
    """Retrieval-augmented prompts with k phantom-style neighbour captions each."""
    from medcap.generation.prompt import build_prompt
    from medcap.types import Hit

    rng = random.Random(seed)
    words = ["CT", "MRI", "X-ray", "ultrasound", "chest", "brain", "abdomen", "pelvis"]
    found = ["nodule", "mass", "cyst", "effusion", "fracture", "lesion"]
    prompts = []
    for i in range(count):
        captions = [
            f"Axial {rng.choice(words[:4])} of the {rng.choice(words[4:])} showing a "
            f"{rng.randint(1, 6)} cm {rng.choice(found)} in the {rng.choice(['left', 'right'])} "
            f"{rng.choice(['upper', 'lower'])} region (arrow)."
            for _ in range(k)
        ]
        hits = [
            Hit(rank=j + 1, score=0.9, image_id=f"{i}-{j}", caption=c)
            for j, c in enumerate(captions)
        ]
        prompts.append(build_prompt(hits, k=k))
    return prompts


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Speed:
    """One Qwen2-VL model shared by every timed setting."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        import torch
        from transformers import Qwen2VLForConditionalGeneration

        if str(REPO) not in sys.path:  # the tiny builders are test support, not medcap
            sys.path.insert(0, str(REPO))
        from tests.support.tiny_generators import build_qwen2vl_processor, qwen2vl_config

        self.args = args
        self.device = torch.device(args.device)
        pixels = args.image_size * args.image_size
        self.processor = build_qwen2vl_processor(
            [p.text for p in _prompts(20, 5, 0)], min_pixels=pixels, max_pixels=pixels
        )
        config = qwen2vl_config(self.processor.tokenizer, size=args.arch)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        torch.manual_seed(0)
        with self.device:
            self.model = Qwen2VLForConditionalGeneration._from_config(
                config, dtype=dtype, attn_implementation="sdpa"
            ).eval()
        # Random weights rarely emit the end token; forbidding it keeps every caption full length.
        self.model.generation_config.min_new_tokens = args.max_new_tokens
        self.params = sum(p.numel() for p in self.model.parameters())
        self.paths = _write_images(work, args.images, args.image_size)
        self.prompts = _prompts(len(self.paths), args.k, 1)
        self.pool = ThreadPoolExecutor(max_workers=args.workers)  # decodes image files
        self.prefetch = ThreadPoolExecutor(max_workers=1)  # loads the next batch meanwhile

    def backend(self, batch_size: int, static: bool) -> Any:
        from medcap.config import DEFAULTS
        from medcap.generation.backends.qwen2vl import Qwen2VLBackend

        pixels = self.args.image_size * self.args.image_size
        cfg = replace(
            DEFAULTS.generation,
            batch_size=batch_size,
            max_new_tokens=self.args.max_new_tokens,
            static_cache=static,
            min_pixels=pixels,
            max_pixels=pixels,
        )
        return Qwen2VLBackend(model=self.model, processor=self.processor, cfg=cfg)

    def load(self, paths: Sequence[Path]) -> list[Any]:
        from medcap.data.images import load_image

        return list(self.pool.map(load_image, paths))

    def end_to_end(self, backend: Any, start: int, count: int, batch_size: int) -> float:
        """Seconds to caption `count` image files from disk, loading the next batch meanwhile."""
        spans = [
            (s, min(s + batch_size, start + count)) for s in range(start, start + count, batch_size)
        ]
        _sync(self.device)
        t0 = time.perf_counter()
        # A pool of its own: a loading task waiting on decode tasks queued behind it in the
        # same pool would never finish with one worker.
        pending = self.prefetch.submit(self.load, self.paths[spans[0][0] : spans[0][1]])
        for i, (a, b) in enumerate(spans):
            images = pending.result()
            if i + 1 < len(spans):
                nxt = spans[i + 1]
                pending = self.prefetch.submit(self.load, self.paths[nxt[0] : nxt[1]])
            backend.generate(images, self.prompts[a:b])
        _sync(self.device)
        return time.perf_counter() - t0

    def breakdown(self, backend: Any, batch_size: int) -> dict[str, float]:
        """Per-image seconds of each stage, measured on one batch."""
        import torch

        paths, prompts = self.paths[:batch_size], self.prompts[:batch_size]
        t0 = time.perf_counter()
        images = self.load(paths)
        t1 = time.perf_counter()
        inputs = backend.encode(images, [backend.chat_text(p) for p in prompts])
        _sync(self.device)
        t2 = time.perf_counter()
        options = {"do_sample": False, "pad_token_id": backend._pad_id}
        if backend.cfg.static_cache:
            options["cache_implementation"] = "static"
        with torch.inference_mode():
            self.model.generation_config.min_new_tokens = 1
            backend.net.generate(**inputs, max_new_tokens=1, **options)
            _sync(self.device)
            t3 = time.perf_counter()
            self.model.generation_config.min_new_tokens = self.args.max_new_tokens
            out = backend.net.generate(**inputs, max_new_tokens=self.args.max_new_tokens, **options)
            _sync(self.device)
        t4 = time.perf_counter()
        backend.processor.batch_decode(
            out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
        t5 = time.perf_counter()
        n = len(paths)
        return {
            "decode_files": (t1 - t0) / n,
            "preprocess": (t2 - t1) / n,
            "prefill_and_vision": (t3 - t2) / n,
            "decode_steps": max(0.0, (t4 - t3) - (t3 - t2)) / n,
            "detokenize": (t5 - t4) / n,
            "prompt_tokens": float(inputs["input_ids"].shape[1]),
            "visual_tokens": float(
                (inputs["input_ids"][0] == self.model.config.image_token_id).sum()
            ),
        }


def run_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Seconds per image: seed 000's one-image calls vs batched (and static-cache) generation."""
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "speed: no CUDA GPU on this machine; the Qwen2-VL speed benchmark needs one (skipped)"
        )
        return {"skipped": "no CUDA GPU"}
    speed = _Speed(args, work)
    cuda = speed.device.type == "cuda"
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(speed.device) if cuda else "cpu",
        "arch": args.arch,
        "parameters": speed.params,
        "image_size": args.image_size,
        "max_new_tokens": args.max_new_tokens,
        "k": args.k,
        "settings": [],
        "goal_s_per_image": GOAL_S_PER_IMAGE,
    }
    # Seed 000's way: one image per generate call, dynamic cache, after a full-length warm-up.
    single = speed.backend(1, static=False)
    speed.end_to_end(single, 0, 1, 1)
    n_single = args.single_images
    seconds = speed.end_to_end(single, 1, n_single, 1)
    result["seed000_s_per_image"] = seconds / n_single
    print(f"seed 000 way (1 image per generate): {seconds / n_single:.3f} s/image over {n_single}")
    for batch_size in args.batch_sizes:
        for static in args.static:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(speed.device)
            backend = speed.backend(batch_size, static)
            speed.end_to_end(
                backend, 0, batch_size, batch_size
            )  # warm-up (and compile) at full length
            count = min(len(speed.paths), batch_size * args.timed_batches)
            seconds = speed.end_to_end(backend, 0, count, batch_size)
            parts = speed.breakdown(backend, batch_size)
            peak = torch.cuda.max_memory_allocated(speed.device) / 2**30 if cuda else float("nan")
            row = {
                "batch_size": backend._batcher.batch_size,
                "static_cache": static,
                "images": count,
                "s_per_image": seconds / count,
                "speedup_vs_seed000": result["seed000_s_per_image"] / (seconds / count),
                "peak_gpu_memory_gb": peak,
                "breakdown_s_per_image": parts,
            }
            result["settings"].append(row)
            print(
                f"batch {row['batch_size']:>4} static={static!s:<5}: "
                f"{row['s_per_image']:.4f} s/image ({row['speedup_vs_seed000']:.0f}x seed 000), "
                f"peak {peak:.1f} GB, {parts['visual_tokens']:.0f} visual tokens, "
                f"prompt {parts['prompt_tokens']:.0f} tokens"
            )
            print(
                "    per image: "
                + ", ".join(
                    f"{k} {v * 1000:.2f} ms" for k, v in parts.items() if not k.endswith("tokens")
                )
            )
    return result


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("quality", "speed", "all"), default="quality")
    parser.add_argument("--workdir", type=Path, default=None, help="keep artifacts here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    quality = parser.add_argument_group("quality")
    quality.add_argument("--n", type=int, default=400, help="phantom cases (80/10/10 split)")
    quality.add_argument("--epochs", type=int, default=20, help="encoder training epochs")
    quality.add_argument("--search-mode", choices=("captions", "images"), default="captions")
    speed = parser.add_argument_group("speed")
    speed.add_argument("--arch", choices=("2b", "tiny"), default="2b")
    speed.add_argument("--device", default="cuda")
    speed.add_argument("--image-size", type=int, default=448, help="448 -> 256 visual tokens")
    speed.add_argument("--max-new-tokens", type=int, default=128)
    speed.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128, 256]
    )
    speed.add_argument(
        "--static",
        type=lambda s: [x == "1" for x in s.split(",")],
        default=[False, True],
        help="KV cache settings to time: 0 dynamic, 1 static (e.g. 0,1)",
    )
    speed.add_argument("--images", type=int, default=512, help="image files written for the runs")
    speed.add_argument("--timed-batches", type=int, default=2)
    speed.add_argument("--single-images", type=int, default=4, help="images timed the seed 000 way")
    speed.add_argument("--workers", type=int, default=8, help="image-decoding threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for generation.json")
    args = parser.parse_args(argv)

    path = args.out / "generation.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="medcap-bench-gen-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.mode in ("quality", "all"):
            results["quality"] = run_quality(args, work / "quality")
            print_quality(results["quality"])
        if args.mode in ("speed", "all"):
            results["speed"] = run_speed(args, work / "speed")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
