"""Evaluation runs behind `medcap eval retrieval` and `medcap eval concepts`.

Each run opens its inputs, scores them, writes thumbnails for the report's example grid
and hands a report dict to `medcap.evaluation.report.write_report` (report.json, then
report.md and PNGs rendered from it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medcap import __version__
from medcap.config import DEFAULTS, DataConfig, EvalConfig, RetrievalConfig
from medcap.errors import InputError
from medcap.types import Record

logger = logging.getLogger(__name__)

_SEARCH_CHUNK = 1024  # query records decoded and searched at a time
CONCEPT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the F1-vs-threshold sweep


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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


def run_retrieval_evaluation(
    data: str | Path,
    models: Sequence[str] | Sequence[Any],
    out_dir: str | Path,
    *,
    split: str = "test",
    cfg: RetrievalConfig,
    eval_cfg: EvalConfig,
    group_by: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
    data_config: DataConfig | None = None,
) -> Path:
    """Evaluate one or more encoders (specs, or loaded encoders) on a split; write the report.

    Returns the path of report.json. A `group_by` column is read even when it is not in
    `data_config.keep_columns`: naming it keeps it.
    """
    from medcap.data.readers import open_dataset
    from medcap.evaluation.report import write_report
    from medcap.retrieval.evaluate import evaluate_retrieval, sample_positions, select_records

    start = time.perf_counter()
    out = Path(out_dir)
    data_config = data_config or DEFAULTS.data
    if group_by and group_by not in data_config.keep_columns:
        data_config = dataclasses.replace(
            data_config, keep_columns=(*data_config.keep_columns, group_by)
        )
    dataset = open_dataset(data, config=data_config)
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
    wanted = {ex["image_id"] for ex in body["examples"]}
    for ex in body["examples"]:
        wanted |= {n["image_id"] for hits in ex["neighbours"].values() for n in hits}
    thumbs = write_thumbnails(
        select_records(dataset.records(split), positions), wanted, out, eval_cfg.thumbnail_px
    )
    report = {
        "kind": "retrieval",
        "medcap_version": __version__,
        "created_at": _now(),
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
        "thumbnails": thumbs,
        "skipped": [dataclasses.asdict(s) for s in dataset.skipped],
        "timings": {"load_models_s": load_s, "total_s": time.perf_counter() - start},
    }
    return write_report(report, out)


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
    data_config: DataConfig | None = None,
) -> Path:
    """Predict each query's CUIs from its index neighbours (self excluded) and score F1."""
    from medcap.data.readers import open_dataset
    from medcap.evaluation.concepts import concept_f1_per_query, predict_concepts, threshold_sweep
    from medcap.evaluation.report import write_report
    from medcap.retrieval.retriever import open_retriever

    start = time.perf_counter()
    retriever = retriever or open_retriever(index_dir, device=device)
    dataset = open_dataset(data, config=data_config)
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
        "created_at": _now(),
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
