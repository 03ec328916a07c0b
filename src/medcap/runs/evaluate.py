"""Evaluation runs behind `medcap eval retrieval|captions|concepts`.

Each run opens its inputs (datasets by name, encoders by spec, an index), scores them
with the library (`medcap.retrieval.evaluate`, `medcap.evaluation`) and returns a report
dict, or writes it with `medcap.evaluation.report.write_report` (report.json, then
report.md and PNGs rendered from it) together with thumbnails for its example grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medcap import __version__
from medcap.clock import now_iso
from medcap.config import DataConfig, EvalConfig, RetrievalConfig, current
from medcap.errors import InputError
from medcap.evaluation.report import write_report
from medcap.retrieval.evaluate import DIRECTIONS
from medcap.types import Record, Skipped

logger = logging.getLogger(__name__)

_SEARCH_CHUNK = 1024  # query records decoded and searched at a time
CONCEPT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the F1-vs-threshold sweep


def thumbnail_name(image_id: str) -> str:
    """A file name for an image_id that is safe on every file system."""
    return hashlib.sha1(image_id.encode()).hexdigest()[:16] + ".jpg"


def write_thumbnails(
    records: Iterable[Record], image_ids: set[str], out_dir: Path, size: int
) -> dict[str, str]:
    """JPEG thumbnails of the wanted cases in `out_dir/thumbs`; image_id -> relative path."""
    from medcap.retrieval.thumbnails import make_thumbnail

    written: dict[str, str] = {}
    if not image_ids:
        return written
    folder = out_dir / "thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        if record.image_id in image_ids and record.image_id not in written:
            data = make_thumbnail(record, size)
            if data is not None:
                (folder / thumbnail_name(record.image_id)).write_bytes(data)
                written[record.image_id] = f"thumbs/{thumbnail_name(record.image_id)}"
            if len(written) == len(image_ids):
                break
    return written


@dataclasses.dataclass
class RetrievalEvaluation:
    """Retrieval scores of one or more encoders on one split, as `medcap eval retrieval`
    reports them; `write` saves report.json, report.md, plots and example thumbnails."""

    report: dict[str, Any]
    records: Callable[[], Iterable[Record]] = dataclasses.field(repr=False)

    @property
    def encoders(self) -> list[dict[str, Any]]:
        """One entry per encoder: spec, label, gallery size, per-direction scores, ranks."""
        encoders: list[dict[str, Any]] = self.report["encoders"]
        return encoders

    @property
    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """label -> image_to_text | text_to_image -> R@K (fractions), median_rank, mean_rank, n."""
        return {
            entry["label"]: {
                direction: {k: v for k, v in entry[direction].items() if k != "recall_curve"}
                for direction in DIRECTIONS
            }
            for entry in self.encoders
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write the report directory `out_dir`; returns the path of its report.json."""
        out = Path(out_dir)
        wanted = {ex["image_id"] for ex in self.report["examples"]}
        for ex in self.report["examples"]:
            wanted |= {n["image_id"] for hits in ex["neighbours"].values() for n in hits}
        px = self.report["config"]["eval"]["thumbnail_px"]
        thumbs = write_thumbnails(self.records(), wanted, out, px)
        return write_report({**self.report, "thumbnails": thumbs}, out)


def evaluate_retrieval_run(
    data: str | Path,
    models: Sequence[str] | Sequence[Any],
    *,
    split: str = "test",
    cfg: RetrievalConfig,
    eval_cfg: EvalConfig,
    group_by: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
    data_cfg: DataConfig | None = None,
) -> RetrievalEvaluation:
    """Evaluate one or more encoders (specs, or loaded encoders) on a split of `data`.

    `data_cfg` says how `data` is read (default: the active config's DataConfig); a
    `group_by` column is read even when it is not in its `keep_columns`: naming it keeps it.
    """
    from medcap.data.readers import open_dataset
    from medcap.retrieval.evaluate import evaluate_retrieval, sample_positions, select_records

    start = time.perf_counter()
    data_cfg = data_cfg or current().data
    if group_by and group_by not in data_cfg.keep_columns:
        data_cfg = dataclasses.replace(data_cfg, keep_columns=(*data_cfg.keep_columns, group_by))
    dataset = open_dataset(data, cfg=data_cfg)
    total = dataset.count(split)
    if total == 0:
        raise InputError(f"split {split!r} of {data} has no usable cases; nothing to evaluate")
    t0 = time.perf_counter()
    encoders = [_load(m, device) for m in models]
    load_s = time.perf_counter() - t0
    positions = sample_positions(total, cfg.sample_pairs, cfg.sample_seed)
    body = evaluate_retrieval(
        select_records(dataset.records(split), positions),
        encoders,
        cfg,
        eval_cfg,
        group_by=group_by,
        progress=progress,
        batch_size=batch_size,
    )
    report = {
        "kind": "retrieval",
        "medcap_version": __version__,
        "created_at": now_iso(),
        "config": {
            "retrieval": dataclasses.asdict(cfg),
            "eval": dataclasses.asdict(eval_cfg),
            "group_by": group_by,
            "models": [getattr(m, "spec", m) for m in models],
        },
        "dataset": {
            "source": str(data),
            "name": dataset.name,
            "fingerprint": dataset.fingerprint(),
            "split": split,
            "split_size": total,
            "pairs_selected": total if positions is None else len(positions),
            "sampled": positions is not None,
        },
        "gallery_size": min(e["gallery_size"] for e in body["encoders"]),
        **body,
        "thumbnails": {},  # filled in by `write`
        "skipped": [dataclasses.asdict(s) for s in dataset.skipped],
        "timings": {"load_models_s": load_s, "total_s": time.perf_counter() - start},
    }
    return RetrievalEvaluation(report, lambda: select_records(dataset.records(split), positions))


def run_retrieval_evaluation(
    data: str | Path,
    models: Sequence[str] | Sequence[Any],
    out_dir: str | Path,
    **options: Any,
) -> Path:
    """Evaluate encoders on a split (see `evaluate_retrieval_run`) and write the report
    directory; returns the path of report.json."""
    return evaluate_retrieval_run(data, models, **options).write(out_dir)


def _load(model: str | Any, device: str) -> Any:
    if not isinstance(model, str):
        return model
    from medcap.encoder import load_encoder

    return load_encoder(model, device=device)


def run_concept_evaluation(
    index_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    cfg: EvalConfig,
    device: str = "auto",
    retriever: Any | None = None,
    verify: bool | None = None,
    data_cfg: DataConfig | None = None,
) -> Path:
    """Predict each query's CUIs from its index neighbours (self excluded) and score F1.

    `verify` checks the index files' checksums (default: IndexConfig.verify); `data_cfg`
    says how `data` is read (default: the active config's DataConfig).
    """
    from medcap.data.readers import open_dataset
    from medcap.evaluation.concepts import concept_f1_per_query, predict_concepts, threshold_sweep
    from medcap.retrieval.retriever import open_retriever

    start = time.perf_counter()
    retriever = retriever or open_retriever(index_dir, device=device, verify=verify)
    dataset = open_dataset(data, cfg=data_cfg or current().data)
    k = min(cfg.concept_k, len(retriever.index))
    ids: list[str] = []
    gold: list[tuple[str, ...]] = []
    neighbour_cuis: list[list[tuple[str, ...]]] = []
    neighbour_scores: list[list[float]] = []
    failed: list[str] = []
    chunk: list[Record] = []

    def flush() -> None:
        for record, hits in zip(
            chunk, retriever.search_records(chunk, k, mode=cfg.concept_mode), strict=True
        ):
            if not hits:
                failed.append(record.image_id)
                continue
            ids.append(record.image_id)
            gold.append(record.cuis)
            neighbour_cuis.append([h.cuis for h in hits])
            neighbour_scores.append([h.score for h in hits])
        chunk.clear()

    for record in dataset.records(split):
        chunk.append(record)
        if len(chunk) >= _SEARCH_CHUNK:
            flush()
    if chunk:
        flush()
    if not ids:
        raise InputError(
            f"no query of split {split!r} in {data} could be searched; nothing to score"
        )
    predicted = predict_concepts(
        neighbour_cuis, neighbour_scores, k=k, threshold=cfg.concept_threshold
    )
    per_query = concept_f1_per_query(gold, predicted)
    sweep = threshold_sweep(
        neighbour_cuis, neighbour_scores, gold, k=k, thresholds=CONCEPT_THRESHOLDS
    )
    manifest = retriever.index.manifest
    report = {
        "kind": "concepts",
        "medcap_version": __version__,
        "created_at": now_iso(),
        "config": {"eval": dataclasses.asdict(cfg), "k_used": k},
        "index": {
            "path": str(Path(index_dir).resolve()),
            "count": len(retriever.index),
            "encoder": retriever.encoder.spec,
            "encoder_fingerprint": retriever.encoder.fingerprint,
            "sources": [
                {"dataset": src.dataset, "fingerprint": src.fingerprint, "split": src.split}
                for src in getattr(manifest, "sources", ())
            ],
        },
        "dataset": {
            "source": str(data),
            "name": dataset.name,
            "fingerprint": dataset.fingerprint(),
            "split": split,
        },
        "n": len(ids),
        "f1": sum(per_query) / len(per_query),
        "queries_with_gold": sum(1 for g in gold if g),
        "mean_gold": sum(len(g) for g in gold) / len(gold),
        "mean_predicted": sum(len(p) for p in predicted) / len(predicted),
        "threshold_sweep": {"thresholds": list(CONCEPT_THRESHOLDS), "f1": sweep},
        "per_query": [
            {"image_id": i, "gold": list(g), "predicted": sorted(p), "f1": f}
            for i, g, p, f in zip(ids, gold, predicted, per_query, strict=True)
        ],
        "skipped": [dataclasses.asdict(s) for s in dataset.skipped]
        + [
            {
                "source": str(data),
                "row": None,
                "image_id": i,
                "reason": "image could not be decoded",
            }
            for i in failed
        ],
        "timings": {"total_s": time.perf_counter() - start},
    }
    return write_report(report, Path(out_dir))


def load_images_by_id(
    source: str | Path, image_ids: Iterable[str], data_cfg: DataConfig | None = None
) -> tuple[dict[str, Any], list[Skipped]]:
    """Decode the images of `image_ids` from a dataset (any split, read as `data_cfg` says;
    default: the active config's); list the ones not found."""
    from medcap.data.images import load_image
    from medcap.data.readers import open_dataset
    from medcap.errors import ImageDecodeError

    wanted = set(image_ids)
    dataset = open_dataset(source, cfg=data_cfg or current().data)
    found: dict[str, Any] = {}
    skipped: list[Skipped] = []
    for split in dataset.splits():
        for record in dataset.records(split):
            if record.image_id in wanted and record.image_id not in found:
                try:
                    found[record.image_id] = load_image(record.image)
                except ImageDecodeError as exc:
                    skipped.append(Skipped(str(source), None, record.image_id, str(exc)))
                    wanted.discard(record.image_id)
        if len(found) == len(wanted):
            break
    for image_id in sorted(wanted - set(found)):
        skipped.append(Skipped(str(source), None, image_id, "image_id not found in the dataset"))
    return found, skipped


@dataclasses.dataclass
class CaptionScores:
    """Caption metrics of a results file, as `medcap eval captions` reports them;
    `write` saves report.json, report.md and plots."""

    report: dict[str, Any]

    @property
    def n(self) -> int:
        """Captions scored (rows with a reference caption)."""
        return int(self.report["n"])

    @property
    def metrics(self) -> dict[str, float]:
        """Corpus scores by name: BLEU-1..4, METEOR, ROUGE-L, CIDEr (+ BERTScore, CLIPScore)."""
        metrics: dict[str, float] = self.report["metrics"]
        return metrics

    @property
    def unavailable(self) -> dict[str, str]:
        """Metrics that could not run here, with why."""
        unavailable: dict[str, str] = self.report["unavailable"]
        return unavailable

    def write(self, out_dir: str | Path) -> Path:
        """Write the report directory `out_dir`; returns the path of its report.json."""
        return write_report(self.report, Path(out_dir))


def run_caption_evaluation(
    results: str | Path,
    cfg: EvalConfig,
    *,
    model: str | Any | None = None,
    data: str | Path | None = None,
    bertscore: bool = True,
    device: str | None = None,
    data_cfg: DataConfig | None = None,
) -> CaptionScores:
    """Score a results file (`medcap caption --out`): BLEU, METEOR, ROUGE-L, CIDEr, ...

    CLIPScore/RefCLIPScore need both `model` (an encoder spec, or a loaded encoder) and
    `data` (the dataset holding the results' images, read as `data_cfg` says).
    """
    from medcap.evaluation.caption_metrics import evaluate_caption_results, load_caption_results

    encoder: Any = None
    images: dict[str, Any] | None = None
    image_skipped: list[Skipped] = []
    if model is not None or data is not None:
        if model is None or data is None:
            raise InputError(
                "CLIPScore needs both --model (an encoder) and --data (the dataset with the images)"
            )
        ids = load_caption_results(results).image_ids
        images, image_skipped = load_images_by_id(data, ids, data_cfg)
        encoder = _load(model, device or current().encoder.device)
    report = evaluate_caption_results(
        results,
        cfg,
        bertscore=bertscore,
        clip_encoder=encoder,
        images=images,
        image_skipped=image_skipped,
    )
    return CaptionScores(report)
