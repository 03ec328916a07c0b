"""Retrieval evaluation on hand-made embeddings: pairing, duplicates, sampling, groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.retrieval import evaluate
from medcap.retrieval.evaluate import (
    caption_keys,
    evaluate_retrieval,
    rank_direction,
    sample_positions,
    select_records,
    top_neighbours,
)
from medcap.retrieval.metrics import ranks_from_scores
from medcap.types import ImageRef, Record, Skipped


class TableEncoder:
    """A tiny real CaseEncoder: each image_id has hand-chosen image and caption vectors."""

    def __init__(
        self, vectors: dict[str, tuple[Sequence[float], Sequence[float]]], name: str = "table"
    ) -> None:
        self.spec = name
        self.fingerprint = f"fp-{name}"
        self.embed_dim = len(next(iter(vectors.values()))[0])
        self.vectors = vectors

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]:
        kept = [r for r in records if r.image.data != b"corrupt"]
        skipped = [
            Skipped("t", None, r.image_id, "cannot decode") for r in records if r not in kept
        ]

        def unit(v: Sequence[float]) -> NDArray[np.float32]:
            a = np.asarray(v, np.float32)
            return a / np.linalg.norm(a)

        images = np.stack([unit(self.vectors[r.image_id][0]) for r in kept])
        captions = np.stack([unit(self.vectors[r.image_id][1]) for r in kept])
        return kept, images, captions, skipped


def _record(image_id: str, caption: str, **extra: str) -> Record:
    return Record(image_id, ImageRef(path=f"{image_id}.png", data=b"png"), caption, extra=extra)


def test_rank_direction_matches_the_full_score_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "_SCORE_CHUNK", 8)  # several chunks
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 5)).astype(np.float32)
    g = rng.normal(size=(37, 5)).astype(np.float32)
    scores = q @ g.T
    ranks, top1 = rank_direction(q, g)
    assert ranks.tolist() == ranks_from_scores(scores, np.arange(37)).tolist()
    assert top1.tolist() == scores.argmax(axis=1).tolist()
    keys = rng.integers(0, 10, size=37)
    relaxed, _ = rank_direction(q, g, keys=keys, ties="optimistic")
    mask = keys[:, None] == keys[None, :]
    assert relaxed.tolist() == ranks_from_scores(scores, mask, ties="optimistic").tolist()
    idx, best = top_neighbours(q[:3], g, 4)
    assert idx.tolist() == np.argsort(-scores[:3], axis=1)[:, :4].tolist()
    assert np.allclose(best, np.sort(scores[:3], axis=1)[:, ::-1][:, :4])


def _duplicate_case() -> tuple[list[Record], TableEncoder]:
    # Cases a and c share a caption. a's image is nearest to c's caption, then to its own;
    # b and d are retrieved correctly. x has an undecodable image.
    records = [
        _record("a", "Axial CT of the chest.", modality="CT"),
        _record("b", "MRI of the knee.", modality="MRI"),
        _record("c", "Axial CT  of the chest.", modality="CT"),  # identical after whitespace
        _record("d", "Ultrasound of the liver.", modality="US"),
        Record("x", ImageRef(path="x.png", data=b"corrupt"), "Broken.", extra={"modality": "CT"}),
    ]
    vectors = {
        "a": ([1.0, 0.0, 0.0, 0.0], [0.8, 0.0, 0.6, 0.0]),
        "b": ([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]),
        "c": ([0.3, 0.0, 1.0, 0.0], [1.0, 0.0, 0.2, 0.0]),
        "d": ([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]),
        "x": ([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]),
    }
    return records, TableEncoder(vectors)


def test_pairs_rank_by_image_id_and_identical_captions_can_count() -> None:
    records, encoder = _duplicate_case()
    eval_cfg = replace_set(DEFAULTS.eval, example_queries=4, example_neighbours=2)
    paired = evaluate_retrieval(
        records, [encoder], DEFAULTS.retrieval, eval_cfg, group_by="modality"
    )
    entry = paired["encoders"][0]
    assert entry["gallery_size"] == 4
    assert [s["image_id"] for s in entry["skipped"]] == ["x"]
    # image a: c's caption (cos .95) beats its own (.8) -> rank 1; all others rank 0
    assert entry["ranks"]["image_to_text"] == [1, 0, 1, 0]
    assert entry["image_to_text"]["R@1"] == pytest.approx(0.5)
    assert entry["image_to_text"]["median_rank"] == 1.0  # floor(median(1, 0, 1, 0)) + 1
    assert entry["groups"]["values"]["CT"]["image_to_text"]["R@1"] == 0.0
    assert entry["groups"]["values"]["MRI"]["n"] == 1
    relaxed_cfg = replace_set(DEFAULTS.retrieval, same_caption_relevant=True)
    relaxed = evaluate_retrieval(records, [encoder], relaxed_cfg, eval_cfg)["encoders"][0]
    assert relaxed["ranks"]["image_to_text"] == [0, 0, 0, 0]
    assert relaxed["image_to_text"]["R@1"] == 1.0


def test_top1_attribute_matches_and_examples() -> None:
    records, encoder = _duplicate_case()
    eval_cfg = replace_set(
        DEFAULTS.eval, example_queries=4, example_neighbours=2, match_attributes=("modality",)
    )
    body = evaluate_retrieval(records, [encoder], DEFAULTS.retrieval, eval_cfg)
    attrs = body["encoders"][0]["attributes"]
    assert attrs["image_to_text"]["modality"] == 1.0  # a's top-1 is c, also CT
    assert attrs["chance"]["modality"] == pytest.approx((2 / 4) ** 2 + 2 * (1 / 4) ** 2)
    example_a = next(ex for ex in body["examples"] if ex["image_id"] == "a")
    hits = example_a["neighbours"]["table"]
    assert [h["image_id"] for h in hits] == ["c", "a"]
    assert [h["hit"] for h in hits] == [False, True]


def test_two_encoders_get_distinct_labels_and_the_same_examples() -> None:
    records, encoder = _duplicate_case()
    body = evaluate_retrieval(records, [encoder, encoder], DEFAULTS.retrieval, DEFAULTS.eval)
    assert [e["label"] for e in body["encoders"]] == ["table #1", "table #2"]
    assert all(set(ex["neighbours"]) == {"table #1", "table #2"} for ex in body["examples"])


def test_caption_keys_normalise_whitespace_only() -> None:
    keys = caption_keys(
        [_record("a", "CT  chest"), _record("b", "CT chest"), _record("c", "ct chest")]
    )
    assert keys[0] == keys[1] != keys[2]


def test_sampling_is_seeded_and_bounded() -> None:
    first = sample_positions(100, 10, seed=3)
    assert first is not None and len(first) == 10 and max(first) < 100
    assert sample_positions(100, 10, seed=3) == first
    assert sample_positions(100, 10, seed=4) != first
    assert sample_positions(100, None, seed=0) is None
    assert sample_positions(5, 10, seed=0) is None  # more than the split: whole split
    with pytest.raises(InputError):
        sample_positions(100, 0, seed=0)
    records = [_record(str(i), f"caption {i}") for i in range(100)]
    chosen = [r.image_id for r in select_records(records, first)]
    assert chosen == [str(i) for i in sorted(first)]


def test_unknown_group_column_names_the_available_ones() -> None:
    records, encoder = _duplicate_case()
    with pytest.raises(InputError, match="available: modality"):
        evaluate_retrieval(records, [encoder], DEFAULTS.retrieval, DEFAULTS.eval, group_by="region")
