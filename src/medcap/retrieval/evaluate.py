"""Retrieval evaluation over a split: image->text and text->image Recall@K and ranks.

Protocol (documented in `report.md` too):
- The gallery is the evaluated pairs themselves: the whole split, or `sample_pairs` pairs
  drawn without replacement with `sample_seed` (the PMC-CLIP 2,000-pair protocol).
- Each image is paired with its own caption (and vice versa) by `image_id`; ranks never
  compare caption strings, unless `same_caption_relevant` is on, in which case every
  gallery case whose caption is identical (after whitespace normalisation) counts as a hit.
- Ranks, ties and R@K / median / mean rank follow `medcap.retrieval.metrics`.
- Several encoders are scored on the same pairs; images an encoder cannot decode are
  skipped (and listed), so the gallery size is reported per encoder.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from medcap.config import EvalConfig, RetrievalConfig
from medcap.errors import InputError
from medcap.retrieval.metrics import ranks_from_scores, recall_at_k, summarize_ranks
from medcap.types import ImageRef, Record, Skipped

logger = logging.getLogger(__name__)

DIRECTIONS = ("image_to_text", "text_to_image")
_ENCODE_CHUNK = 2048  # records decoded and embedded at a time (bounds image bytes in memory)
_SCORE_CHUNK = 1024  # query rows scored at a time


class CaseEncoder(Protocol):
    """What the evaluation needs from an encoder (a medcap `Encoder`)."""

    spec: str
    fingerprint: str
    embed_dim: int

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]: ...


@dataclasses.dataclass
class EncodedSplit:
    """One encoder's embeddings of the evaluated pairs (rows aligned with `records`)."""

    records: list[Record]  # image bytes dropped
    images: NDArray[np.float32]  # (m, d), L2-normalised
    captions: NDArray[np.float32]  # (m, d), L2-normalised
    skipped: list[Skipped]
    encode_s: float


def sample_positions(total: int, sample_pairs: int | None, seed: int) -> set[int] | None:
    """Positions (in split order) of the sampled pairs, or None for the whole split."""
    if sample_pairs is None or sample_pairs >= total:
        if sample_pairs is not None:
            logger.warning(
                "split has %d pairs, fewer than --sample-pairs %d: using all", total, sample_pairs
            )
        return None
    if sample_pairs < 1:
        raise InputError(f"--sample-pairs must be >= 1, got {sample_pairs}")
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.choice(total, size=sample_pairs, replace=False)}


def select_records(records: Iterable[Record], positions: set[int] | None) -> Iterator[Record]:
    """The records at `positions` (all of them when None), in order."""
    for i, record in enumerate(records):
        if positions is None or i in positions:
            yield record


def _light(record: Record) -> Record:
    return dataclasses.replace(record, image=ImageRef(path=record.image.path))


def encode_split(
    records: Iterable[Record],
    encoders: Sequence[CaseEncoder],
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> list[EncodedSplit]:
    """Embed the pairs with every encoder, one chunk of decoded records at a time."""
    parts: list[dict[str, Any]] = [
        {"records": [], "images": [], "captions": [], "skipped": [], "encode_s": 0.0}
        for _ in encoders
    ]
    chunk: list[Record] = []

    def flush() -> None:
        for encoder, part in zip(encoders, parts, strict=True):
            start = time.perf_counter()
            kept, images, captions, skipped = encoder.encode_cases(
                chunk, batch_size=batch_size, progress=progress
            )
            part["encode_s"] += time.perf_counter() - start
            part["records"] += [_light(r) for r in kept]
            part["images"].append(images)
            part["captions"].append(captions)
            part["skipped"] += skipped
        chunk.clear()

    for record in records:
        chunk.append(record)
        if len(chunk) >= _ENCODE_CHUNK:
            flush()
    if chunk:
        flush()
    out = []
    for encoder, part in zip(encoders, parts, strict=True):
        empty = np.zeros((0, encoder.embed_dim), np.float32)
        out.append(
            EncodedSplit(
                records=part["records"],
                images=np.concatenate([empty, *part["images"]]),
                captions=np.concatenate([empty, *part["captions"]]),
                skipped=part["skipped"],
                encode_s=part["encode_s"],
            )
        )
    return out


def caption_keys(records: Sequence[Record]) -> NDArray[np.int64]:
    """An integer per record; records with identical captions (whitespace-normalised) share it."""
    ids: dict[str, int] = {}
    return np.array(
        [ids.setdefault(" ".join(r.caption.split()), len(ids)) for r in records], np.int64
    )


def rank_direction(
    queries: NDArray[np.float32],
    gallery: NDArray[np.float32],
    *,
    keys: NDArray[np.int64] | None = None,
    ties: str = "pessimistic",
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rank of each query's pair (row i pairs with gallery item i) and its top-1 item.

    Returns (ranks (q,), index of the best-scoring gallery item (q,)).
    """
    q = len(queries)
    ranks = np.empty(q, np.int64)
    top1 = np.empty(q, np.int64)
    for start in range(0, q, _SCORE_CHUNK):
        stop = min(start + _SCORE_CHUNK, q)
        scores = queries[start:stop] @ gallery.T
        if keys is None:
            positives: NDArray[Any] = np.arange(start, stop)
        else:
            positives = keys[start:stop, None] == keys[None, :]
        ranks[start:stop] = ranks_from_scores(scores, positives, ties=ties)  # type: ignore[arg-type]
        top1[start:stop] = scores.argmax(axis=1)
    return ranks, top1


def top_neighbours(
    queries: NDArray[np.float32], gallery: NDArray[np.float32], n: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The `n` best gallery items of a few queries, best first: (indices, cosine scores)."""
    scores = queries @ gallery.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, min(n, gallery.shape[0]))]
    return order, np.take_along_axis(scores, order, axis=1)


def _group_values(records: Sequence[Record], group_by: str) -> list[str]:
    values = [r.extra.get(group_by) for r in records]
    if records and all(v is None for v in values):
        available = sorted({k for r in records for k in r.extra})
        raise InputError(
            f"--group-by {group_by!r}: no evaluated case has that column; available: "
            f"{', '.join(available) or 'none'}"
        )
    return ["(none)" if v is None else str(v) for v in values]


def _attribute_matches(
    records: Sequence[Record], top1: dict[str, NDArray[np.int64]], attributes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Share of queries whose top-1 neighbour has the same attribute value, and chance."""
    out: dict[str, dict[str, float]] = {d: {} for d in (*DIRECTIONS, "chance")}
    for attr in attributes:
        values = [r.extra.get(attr) for r in records]
        known = np.array([v is not None for v in values])
        if not known.any():
            continue
        labels = np.array([str(v) for v in values], dtype=object)
        for direction, idx in top1.items():
            both = known & known[idx]
            out[direction][attr] = float(np.mean(labels[both] == labels[idx][both]))
        counts = Counter(labels[known].tolist())
        total = sum(counts.values())
        out["chance"][attr] = float(sum((c / total) ** 2 for c in counts.values()))
    return out


def evaluate_encoded(
    encoded: EncodedSplit,
    encoder: CaseEncoder,
    cfg: RetrievalConfig,
    eval_cfg: EvalConfig,
    *,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Scores of one encoder on its embedded pairs: the `encoders[i]` entry of a report."""
    start = time.perf_counter()
    records = encoded.records
    keys = caption_keys(records) if cfg.same_caption_relevant else None
    ranks: dict[str, NDArray[np.int64]] = {}
    top1: dict[str, NDArray[np.int64]] = {}
    pairs = {"image_to_text": (encoded.images, encoded.captions)}
    pairs["text_to_image"] = (encoded.captions, encoded.images)
    for direction, (queries, gallery) in pairs.items():
        ranks[direction], top1[direction] = rank_direction(
            queries, gallery, keys=keys, ties=cfg.rank_ties
        )
    entry: dict[str, Any] = {
        "spec": encoder.spec,
        "fingerprint": encoder.fingerprint,
        "embed_dim": encoder.embed_dim,
        "gallery_size": len(records),
    }
    max_k = max(1, min(eval_cfg.recall_curve_max_k, len(records)))
    for direction in DIRECTIONS:
        entry[direction] = summarize_ranks(ranks[direction], cfg.recall_ks)
        entry[direction]["recall_curve"] = [
            recall_at_k(ranks[direction], k) for k in range(1, max_k + 1)
        ]
    entry["ranks"] = {d: ranks[d].tolist() for d in DIRECTIONS}
    entry["image_ids"] = [r.image_id for r in records]
    if group_by:
        labels = np.array(_group_values(records, group_by), dtype=object)
        groups: dict[str, Any] = {}
        for value in sorted(set(labels.tolist())):
            mask = labels == value
            groups[value] = {"n": int(mask.sum())}
            for direction in DIRECTIONS:
                groups[value][direction] = summarize_ranks(ranks[direction][mask], cfg.recall_ks)
        entry["groups"] = {"by": group_by, "values": groups}
    entry["attributes"] = _attribute_matches(records, top1, eval_cfg.match_attributes)
    entry["skipped"] = [dataclasses.asdict(s) for s in encoded.skipped]
    entry["timings"] = {"encode_s": encoded.encode_s, "score_s": time.perf_counter() - start}
    return entry


def encoder_label(spec: str) -> str:
    """A short name for plots and tables: the spec, or the last two parts of a path."""
    parts = Path(spec).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else spec


def evaluate_retrieval(
    records: Iterable[Record],
    encoders: Sequence[CaseEncoder],
    cfg: RetrievalConfig,
    eval_cfg: EvalConfig,
    *,
    group_by: str | None = None,
    progress: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Score every encoder on the same pairs: `{"encoders": [...], "examples": [...]}`.

    `records` are the pairs to evaluate (already sampled). Example queries are drawn with
    `sample_seed` from the cases every encoder kept; each lists its top image->text
    neighbours per encoder.
    """
    if not encoders:
        raise InputError("no encoder given; pass at least one --model")
    encoded = encode_split(records, encoders, batch_size=batch_size, progress=progress)
    for encoder, enc in zip(encoders, encoded, strict=True):
        if not enc.records:
            raise InputError(
                f"no pair could be embedded by {encoder.spec} ({len(enc.skipped)} skipped); "
                "check the dataset's images and split"
            )
    entries = []
    for encoder, enc in zip(encoders, encoded, strict=True):
        entry = evaluate_encoded(enc, encoder, cfg, eval_cfg, group_by=group_by)
        entry["label"] = encoder_label(encoder.spec)
        entries.append(entry)
    labels = Counter(e["label"] for e in entries)
    for i, entry in enumerate(entries):
        if labels[entry["label"]] > 1:
            entry["label"] = f"{entry['label']} #{i + 1}"
    examples = _examples(
        encoded, entries, eval_cfg, seed=cfg.sample_seed, keyed=cfg.same_caption_relevant
    )
    return {"encoders": entries, "examples": examples}


def _examples(
    encoded: Sequence[EncodedSplit],
    entries: Sequence[dict[str, Any]],
    eval_cfg: EvalConfig,
    *,
    seed: int,
    keyed: bool,
) -> list[dict[str, Any]]:
    """A few seeded example queries with each encoder's top image->text neighbours."""
    common = sorted(set.intersection(*({r.image_id for r in enc.records} for enc in encoded)))
    if not common or eval_cfg.example_queries < 1:
        return []
    rng = np.random.default_rng(seed)
    picks = sorted(
        rng.choice(len(common), size=min(eval_cfg.example_queries, len(common)), replace=False)
    )
    examples = []
    for image_id in (common[i] for i in picks):
        example: dict[str, Any] = {"image_id": image_id, "neighbours": {}}
        for enc, entry in zip(encoded, entries, strict=True):
            row = next(i for i, r in enumerate(enc.records) if r.image_id == image_id)
            query = enc.records[row]
            example["caption"] = query.caption
            example["extra"] = _jsonable(query.extra)
            idx, scores = top_neighbours(
                enc.images[row : row + 1], enc.captions, eval_cfg.example_neighbours
            )
            example["neighbours"][entry["label"]] = [
                {
                    "image_id": enc.records[j].image_id,
                    "caption": enc.records[j].caption,
                    "score": round(float(score), 5),
                    "hit": bool(
                        j == row
                        or (keyed and enc.records[j].caption.split() == query.caption.split())
                    ),
                }
                for j, score in zip(idx[0].tolist(), scores[0].tolist(), strict=True)
            ]
        examples.append(example)
    return examples


def _jsonable(extra: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(extra).items():
        out[str(key)] = (
            value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        )
    return out
