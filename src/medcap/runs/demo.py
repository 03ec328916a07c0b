"""`medcap demo`: the whole pipeline on built-in phantoms, ending in one report.

Stages (each writes its own artifact under the demo directory, as the real commands do):
phantoms -> train the tiny CLIP -> index the train split -> retrieval evaluation (random
init vs trained) -> consensus captions for the test split (plus a random-caption baseline)
-> caption metrics -> one combined report. Training runs a fixed number of epochs, not a
time budget, so the same seed gives the same metrics.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcap.clock import now_iso
from medcap.config import DEFAULTS, DemoConfig, MedcapConfig, dump_config, replace_set
from medcap.errors import InputError
from medcap.types import Caption, Record

LOG = logging.getLogger(__name__)
MARKER = "demo.json"
Say = Callable[[str], None]


@dataclass
class DemoResult:
    """Where the demo wrote things and the headline numbers."""

    out_dir: Path
    report: Path
    index_dir: Path
    checkpoint: Path
    data_dir: Path
    query_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


def _prepare_out(out: Path) -> None:
    """Start from an empty demo directory; refuse to clear a directory the demo did not make."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise InputError(
                f"{out} exists and is not a medcap demo directory; pass another --out or empty it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _random_captions(
    train: Sequence[Record], test: Sequence[Record], out: Path, seed: int, split: str
) -> None:
    """The floor to beat: each test case gets a caption drawn at random from the train split."""
    from medcap.runs.caption import caption_dataset

    rng = random.Random(seed)

    def pick(records: Sequence[Record]) -> list[Caption]:
        return [Caption(rng.choice(train).caption, "random", "train-split", 0.0) for _ in records]

    caption_dataset(test, pick, out, split=split, overwrite=True, progress=False)


def _headline(retrieval: dict[str, Any], captions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The few numbers the CLI prints and the README quotes."""
    head: dict[str, Any] = {"retrieval": {}, "captions": {}}
    for entry in retrieval["encoders"]:
        i2t = entry["image_to_text"]
        head["retrieval"][entry["label"]] = {
            "R@1": i2t["R@1"],
            "R@10": i2t["R@10"],
            "median_rank": i2t["median_rank"],
            "gallery": entry["gallery_size"],
            "top1_match": entry.get("attributes", {}).get("image_to_text", {}),
        }
    for name, report in captions.items():
        scores = report["metrics"]
        head["captions"][name] = {
            k: scores[k] for k in ("BLEU-4", "ROUGE-L", "CIDEr", "METEOR") if k in scores
        }
    return head


def run_demo(
    out_dir: str | Path,
    cfg: DemoConfig = DEFAULTS.demo,
    *,
    root: MedcapConfig = DEFAULTS,
    say: Say = LOG.info,
    progress: bool = False,
) -> DemoResult:
    """Run every stage on `cfg.n` phantoms into `out_dir` and return where the report is.

    >>> result = run_demo("demo-out")
    >>> print(result.report)
    """
    from medcap.data.images import load_image
    from medcap.data.phantoms import build_phantoms
    from medcap.data.readers import open_dataset
    from medcap.encoder import load_encoder
    from medcap.encoder.image_tower import save_image_tower
    from medcap.evaluation.caption_metrics import evaluate_caption_results
    from medcap.evaluation.report import compare_reports, write_report
    from medcap.index import build_index
    from medcap.retrieval.retriever import open_retriever
    from medcap.retrieval.thumbnails import thumbnailer
    from medcap.runs.caption import BatchRun, caption_split
    from medcap.runs.evaluate import run_retrieval_evaluation
    from medcap.train.loop import train_encoder

    out = Path(out_dir)
    _prepare_out(out)
    (out / MARKER).write_text(json.dumps({"started_at": now_iso(), "n": cfg.n, "seed": cfg.seed}))
    dump_config(root, out / "config.json")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    data_dir = out / "phantoms"
    say(f"[1/7] generating {cfg.n} phantom cases (seed {cfg.seed}) -> {data_dir}")
    build_phantoms(data_dir, cfg.n, cfg.seed, image_size=cfg.image_size, cfg=root.data)
    dataset = open_dataset(data_dir, cfg=root.data)
    lap("phantoms")

    train_cfg = replace_set(root.train, epochs=cfg.epochs, seed=cfg.seed, max_minutes=None)
    say(f"[2/7] training {cfg.model} from scratch for {cfg.epochs} epochs -> {out / 'encoder'}")
    trained = train_encoder(
        dataset, out / "encoder", model=cfg.model, cfg=train_cfg, progress=progress
    )
    checkpoint = trained.best_checkpoint
    lap("train")

    index_dir = out / "index"
    say(f"[3/7] indexing the train split -> {index_dir}")
    encoder = load_encoder(str(checkpoint), device=root.encoder.device)
    build_index(
        dataset.records("train"),
        encoder,
        index_dir,
        root.index,
        dataset_fingerprint=dataset.fingerprint(),
        dataset_name=str(data_dir),
        split="train",
        progress=progress,
        total=dataset.count("train"),
        make_thumbnail=thumbnailer(root.index.thumbnail_size),
        kept_columns=dataset.config.keep_columns,
    )
    save_image_tower(encoder)  # `medcap search` on the demo index starts without open_clip
    lap("index")

    say("[4/7] retrieval on the test split: random-init vs trained encoder")
    retrieval_path = run_retrieval_evaluation(
        data_dir,
        [cfg.model, str(checkpoint)],
        out / "eval-retrieval",
        split="test",
        cfg=root.retrieval,
        eval_cfg=root.eval,
        group_by="modality",
        device=root.encoder.device,
        progress=progress,
    )
    lap("eval_retrieval")

    say("[5/7] captioning the test split with the consensus backend (and a random baseline)")
    consensus_csv = out / "captions-consensus.csv"
    caption_split(
        BatchRun(str(data_dir), "test", str(index_dir), str(consensus_csv)),
        replace_set(root.generation, backend="consensus"),
        progress=progress,
    )
    random_csv = out / "captions-random.csv"
    _random_captions(
        list(dataset.records("train")), list(dataset.records("test")), random_csv, cfg.seed, "test"
    )
    lap("caption")

    say("[6/7] scoring the captions (BLEU, METEOR, ROUGE-L, CIDEr)")
    caption_reports: dict[str, dict[str, Any]] = {}
    caption_dirs = []
    for name, path in (("consensus", consensus_csv), ("random-caption", random_csv)):
        report = evaluate_caption_results(path, root.eval, bertscore=False)
        report_dir = out / f"eval-captions-{name}"
        write_report(report, report_dir)
        caption_reports[name] = report
        caption_dirs.append(report_dir)
    lap("eval_captions")

    say(f"[7/7] writing the combined report -> {out / 'report'}")
    report_md = compare_reports([retrieval_path.parent, *caption_dirs], out / "report")
    lap("report")

    retrieval = json.loads(retrieval_path.read_text())
    retriever = open_retriever(index_dir, device=root.encoder.device)
    queries = list(dataset.records("test"))[: cfg.example_searches]
    query_dir = out / "queries"  # a few test images as files, to try `medcap search` on
    query_dir.mkdir(exist_ok=True)
    for record in queries:
        load_image(record.image).save(query_dir / f"{record.image_id}.png")
    hits = retriever.search_records(queries, 3, mode="captions")
    examples = [
        {
            "image_id": q.image_id,
            "caption": q.caption,
            "neighbours": [(h.score, h.caption) for h in hs],
        }
        for q, hs in zip(queries, hits, strict=True)
    ]
    result = DemoResult(
        out_dir=out,
        report=report_md,
        index_dir=index_dir,
        checkpoint=checkpoint,
        data_dir=data_dir,
        query_dir=query_dir,
        metrics=_headline(retrieval, caption_reports),
        timings_s=timings,
        examples=examples,
    )
    summary = {
        "finished_at": now_iso(),
        "n": cfg.n,
        "seed": cfg.seed,
        "metrics": result.metrics,
        "timings_s": timings,
    }
    (out / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return result
