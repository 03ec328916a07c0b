"""Caption metrics over a batch-captioning results file: COCO metrics, BERTScore, CLIPScore.

`score_captions` gives BLEU-1..4, METEOR, ROUGE-L and CIDEr exactly as the COCO caption
evaluation (pycocoevalcap) computes them: captions are tokenised with `ptb_tokenize`, then
scored corpus-level (see `coco_metrics`). With `imageclef=True`, both sides first get the
ImageCLEFmedical preprocessing (lower-case, digit runs -> "number", punctuation removed)
and ROUGE-1 F1 is added. A metric that cannot run here (METEOR without Java, BERTScore
without its local model) is listed under `unavailable` with the reason, never reported as 0.

Duplicate image ids in a results file are an error by default (eval.duplicates "error"):
they would count some images twice. With "mean", every row is scored as usual and every
corpus score counts each image once: per-item scores (ROUGE-L, CIDEr-D, ROUGE-1,
BERTScore, CLIPScore) are averaged over an image's rows first, and BLEU's n-gram counts
and CIDEr-D's document frequencies weight each of an image's m rows by 1/m. METEOR's corpus
score comes from the jar and cannot be weighted, so it is then unavailable. The report
always says how many ids repeated.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcap.clock import now_iso
from medcap.config import EvalConfig
from medcap.errors import CorruptArtifactError, InputError
from medcap.evaluation.coco_metrics import bleu, cider_d, rouge_l, weighted_mean
from medcap.evaluation.meteor import meteor, meteor_unavailable_reason
from medcap.evaluation.tokenize import imageclef_preprocess, ptb_tokenize
from medcap.types import Skipped

logger = logging.getLogger(__name__)

RESULT_COLUMNS = ("image_id", "original_caption", "generated_caption")
COCO_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


@dataclass
class CaptionMetrics:
    """Corpus scores, per-caption scores and the metrics that could not run (with why)."""

    metrics: dict[str, float] = field(default_factory=dict)
    per_item: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class CaptionResults:
    """The rows of a results file that have a reference caption."""

    path: Path
    image_ids: list[str]
    references: list[str]
    candidates: list[str]
    skipped: list[Skipped]


def _as_reference_lists(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


def rouge1_f1(candidate: str, reference: str) -> float:
    """ROUGE-1 F1 without stemming (rouge_score's tokenisation: lower-case [a-z0-9] runs)."""
    cand = Counter(re.findall(r"[a-z0-9]+", candidate.lower()))
    ref = Counter(re.findall(r"[a-z0-9]+", reference.lower()))
    overlap = sum((cand & ref).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(cand.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def compute_caption_metrics(
    references: Sequence[str | Sequence[str]],
    candidates: Sequence[str],
    *,
    imageclef: bool = False,
    use_meteor: bool = True,
    weights: Sequence[float] | None = None,
) -> CaptionMetrics:
    """COCO metrics (plus ROUGE-1 with `imageclef`) for one candidate per reference list.

    `weights` (one per item; see `duplicate_weights`) weight each item in every corpus
    score; METEOR, whose corpus score the jar computes, is then unavailable.
    """
    refs = _as_reference_lists(references)
    if len(refs) != len(candidates):
        raise ValueError(f"{len(refs)} references but {len(candidates)} candidates")
    if imageclef:
        refs = [[imageclef_preprocess(r) for r in rs] for rs in refs]
        candidates = [imageclef_preprocess(c) for c in candidates]
    tok_refs = [[ptb_tokenize(r) for r in rs] for rs in refs]
    tok_cands = [ptb_tokenize(c) for c in candidates]
    out = CaptionMetrics()
    if not tok_cands:
        return out
    corpus_bleu, item_bleu = bleu(tok_cands, tok_refs, weights=weights)
    for n in range(4):
        out.metrics[f"BLEU-{n + 1}"] = corpus_bleu[n]
        out.per_item[f"BLEU-{n + 1}"] = item_bleu[n]
    reason = meteor_unavailable_reason() if use_meteor else "METEOR turned off (eval.meteor)"
    if reason is None and weights is not None:
        reason = (
            "METEOR's corpus score (the jar's) cannot count each image once; remove the duplicates"
        )
    if reason is None:
        try:
            out.metrics["METEOR"], out.per_item["METEOR"] = meteor(tok_cands, tok_refs)
        except RuntimeError as exc:
            reason = str(exc)
    if reason is not None:
        out.unavailable["METEOR"] = reason
    _, out.per_item["ROUGE-L"] = rouge_l(tok_cands, tok_refs)
    out.metrics["ROUGE-L"] = weighted_mean(out.per_item["ROUGE-L"], weights)
    out.metrics["CIDEr"], out.per_item["CIDEr"] = cider_d(tok_cands, tok_refs, weights=weights)
    if imageclef:
        scores = [max(rouge1_f1(c, r) for r in rs) for c, rs in zip(candidates, refs, strict=True)]
        out.metrics["ROUGE-1"] = weighted_mean(scores, weights)
        out.per_item["ROUGE-1"] = scores
    return out


def duplicate_weights(image_ids: Sequence[str]) -> tuple[dict[str, int], list[float] | None]:
    """({image_id: rows} of the ids with more than one row, a weight of 1/rows per row).

    The weights are None when every id is unique; with them every image counts once.
    """
    counts = Counter(image_ids)
    repeated = {i: c for i, c in counts.items() if c > 1}
    return repeated, [1.0 / counts[i] for i in image_ids] if repeated else None


def duplicates_note(report: dict[str, Any]) -> str:
    """One line on the repeated image ids of a `captions` report ("" for older reports)."""
    found = report.get("duplicates")
    if not found:
        return ""
    if not found["image_ids"]:
        return "duplicates: none (one row per image id)"
    return (
        f"duplicates: {found['image_ids']} image id(s) had more than one row "
        f"({found['extra_rows']} extra rows); each image's rows were averaged, so it counts once"
    )


def _duplicates_error(path: Path, repeated: dict[str, int]) -> InputError:
    shown = sorted(repeated)[:3]
    more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
    extra = sum(repeated.values()) - len(repeated)
    return InputError(
        f"{path}: {len(repeated)} image id(s) have more than one row ({', '.join(shown)}{more}; "
        f"{extra} extra rows); remove the duplicates, or pass --duplicates mean to average "
        "each image's rows"
    )


def score_captions(
    references: Sequence[str], candidates: Sequence[str], *, imageclef: bool = False
) -> dict[str, float]:
    """BLEU-1..4, METEOR (when it can run), ROUGE-L, CIDEr (and ROUGE-1 with `imageclef`).

    >>> s = score_captions(["CT of the chest."], ["CT of the chest."])
    >>> round(s["ROUGE-L"], 3)
    1.0
    """
    return compute_caption_metrics(references, candidates, imageclef=imageclef).metrics


def load_caption_results(path: str | Path) -> CaptionResults:
    """Read a results CSV/parquet (columns image_id, original_caption, generated_caption)."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"results file {path} does not exist; pass the CSV/parquet from `medcap caption`"
        )
    rows, columns = _read_rows(path)
    missing = [c for c in RESULT_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; a results file needs "
            f"{', '.join(RESULT_COLUMNS)} (found: {', '.join(columns) or 'none'})"
        )
    results = CaptionResults(path, [], [], [], [])
    for i, row in enumerate(rows):
        reference = _text(row.get("original_caption"))
        if not reference.strip():
            results.skipped.append(
                Skipped(str(path), i, _text(row.get("image_id")) or None, "no original_caption")
            )
            continue
        results.image_ids.append(_text(row.get("image_id")))
        results.references.append(reference)
        results.candidates.append(_text(row.get("generated_caption")))
    return results


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NaN from parquet
        return ""
    return str(value)


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    if path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptArtifactError(f"{path}: not a readable parquet file ({exc})") from None
        return table.to_pylist(), list(table.column_names)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return rows, list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None


def evaluate_caption_results(
    path: str | Path,
    cfg: EvalConfig,
    *,
    bertscore: bool = True,
    clip_encoder: Any | None = None,
    images: dict[str, Any] | None = None,
    image_skipped: Sequence[Skipped] = (),
) -> dict[str, Any]:
    """Score a results file; returns a `captions` report dict (see `report.write_report`).

    `clip_encoder` and `images` (image_id -> PIL image) turn on CLIPScore/RefCLIPScore.
    """
    from medcap import __version__
    from medcap.evaluation.bertscore import bertscore_f1, bertscore_unavailable_reason

    start = time.perf_counter()
    results = load_caption_results(path)
    if not results.candidates:
        raise InputError(f"{path}: no row has an original_caption; nothing to score")
    repeated, weights = duplicate_weights(results.image_ids)
    if repeated and cfg.duplicates == "error":
        raise _duplicates_error(Path(path), repeated)
    # before any metric runs: a damaged local BERTScore folder is an error, not a late surprise
    reason = bertscore_unavailable_reason(cfg.bertscore_model) if bertscore else None
    imageclef = cfg.imageclef_preprocess
    scored = compute_caption_metrics(
        results.references,
        results.candidates,
        imageclef=imageclef,
        use_meteor=cfg.meteor,
        weights=weights,
    )
    timings = {"coco_metrics_s": time.perf_counter() - start}
    if bertscore:
        if reason is None:
            t0 = time.perf_counter()
            prep = imageclef_preprocess if imageclef else (lambda s: s)
            try:
                _, scored.per_item["BERTScore-F1"] = bertscore_f1(
                    [prep(c) for c in results.candidates],
                    [[prep(r)] for r in results.references],
                    model=cfg.bertscore_model,
                    num_layers=cfg.bertscore_num_layers,
                    batch_size=cfg.bertscore_batch_size,
                )
                scored.metrics["BERTScore-F1"] = weighted_mean(
                    scored.per_item["BERTScore-F1"], weights
                )
            except RuntimeError as exc:
                reason = str(exc)
            timings["bertscore_s"] = time.perf_counter() - t0
        if reason is not None:
            scored.unavailable["BERTScore-F1"] = reason
    skipped = list(results.skipped) + list(image_skipped)
    clip_info: dict[str, Any] = {}
    keep = [i for i, image_id in enumerate(results.image_ids) if image_id in (images or {})]
    if clip_encoder is not None and images is not None and keep:
        from medcap.evaluation.clipscore import compute_clipscores

        t0 = time.perf_counter()
        clip = compute_clipscores(
            clip_encoder,
            [images[results.image_ids[i]] for i in keep],
            [results.candidates[i] for i in keep],
            [[results.references[i]] for i in keep],
            weight=cfg.clipscore_weight,
        )
        for name in ("CLIPScore", "RefCLIPScore"):
            scored.metrics[name] = (
                clip[name]
                if weights is None
                else weighted_mean(clip["per_item"][name], [weights[i] for i in keep])
            )
        clip_info = {"encoder": clip_encoder.spec, "items": len(keep)}
        clip_info["fingerprint"] = getattr(clip_encoder, "fingerprint", "")
        timings["clipscore_s"] = time.perf_counter() - t0
    else:
        reason = (
            "no image of the results was found in the dataset given with --data"
            if clip_encoder is not None and images is not None
            else "CLIPScore needs --model (a medcap encoder) and --data (to find the images)"
        )
        scored.unavailable.setdefault("CLIPScore", reason)
        scored.unavailable.setdefault("RefCLIPScore", reason)
    timings["total_s"] = time.perf_counter() - start
    return {
        "kind": "captions",
        "medcap_version": __version__,
        "created_at": now_iso(),
        "config": {"eval": _asdict(cfg), "imageclef_preprocess": imageclef},
        "results_file": str(Path(path).resolve()),
        "n": len(results.candidates) - sum(repeated.values()) + len(repeated),  # images
        "rows": len(results.candidates),
        "duplicates": {
            "policy": cfg.duplicates,
            "image_ids": len(repeated),
            "extra_rows": sum(repeated.values()) - len(repeated),
            "ids": sorted(repeated)[:50],
        },
        "metrics": scored.metrics,
        "unavailable": scored.unavailable,
        "clipscore": clip_info,
        "per_item": {"image_id": results.image_ids, **scored.per_item},
        "skipped": [_asdict(s) for s in skipped],
        "timings": timings,
    }


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)
