"""Retriever over the phantom index (trained tiny encoder): self-hits, text queries, errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcap.data.images import load_image
from medcap.errors import IndexMismatchError, InputError
from medcap.retrieval.retriever import Retriever, open_retriever


@pytest.fixture(scope="module")
def train_records(phantom_dataset: Any) -> list[Any]:
    return list(phantom_dataset.records("train"))


def test_every_indexed_image_finds_itself_first(
    phantom_retriever: Retriever, train_records: list[Any]
) -> None:
    found = phantom_retriever.search_records(train_records, 2, mode="images", exclude_self=False)
    assert len(found) == len(train_records) == len(phantom_retriever.index)
    for record, hits in zip(train_records, found, strict=True):
        assert hits[0].image_id == record.image_id
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)  # float16 storage
        assert hits[0].rank == 1 and hits[1].rank == 2


def test_search_images_matches_search_records(
    phantom_retriever: Retriever, train_records: list[Any]
) -> None:
    records = train_records[:8]
    images = [load_image(r.image) for r in records]
    by_image = phantom_retriever.search_images(images, 4, mode="captions")
    by_record = phantom_retriever.search_records(records, 4, mode="captions", exclude_self=False)
    assert [[h.image_id for h in hits] for hits in by_image] == [
        [h.image_id for h in hits] for hits in by_record
    ]


def test_exclude_self_drops_the_query_case(
    phantom_retriever: Retriever, train_records: list[Any]
) -> None:
    found = phantom_retriever.search_records(train_records[:20], 5, mode="images")
    for record, hits in zip(train_records[:20], found, strict=True):
        assert len(hits) == 5
        assert record.image_id not in {h.image_id for h in hits}
    ids = [r.image_id for r in train_records[:3]]
    images = [load_image(r.image) for r in train_records[:3]]
    hits = phantom_retriever.search_images(images, 3, mode="images", exclude_ids=ids)
    assert all(i not in {h.image_id for h in hs} for i, hs in zip(ids, hits, strict=True))


def test_a_caption_as_text_finds_its_case(
    phantom_retriever: Retriever, train_records: list[Any]
) -> None:
    captions = [r.caption for r in train_records]
    # text -> captions: the case's own caption is the exact match (score ~1)
    for record, hits in zip(
        train_records, phantom_retriever.search_texts(captions, 1, mode="captions"), strict=True
    ):
        assert hits[0].caption == record.caption
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)
    # text -> images: the paired case ranks near the top far more often than chance
    found = phantom_retriever.search_texts(captions, 10, mode="images")
    in_top10 = np.mean(
        [r.image_id in {h.image_id for h in hs} for r, hs in zip(train_records, found, strict=True)]
    )
    assert in_top10 >= 0.3 > 10 / len(train_records)


def test_relevant_cases_rank_above_irrelevant_ones(
    phantom_retriever: Retriever, phantom_dataset: Any
) -> None:
    # Phantom ground truth: held-out cases should find cases of their own modality.
    queries = [*phantom_dataset.records("valid"), *phantom_dataset.records("test")]
    index = phantom_retriever.index
    modalities = [index.item(i).extra["modality"] for i in index.image_ids()]
    chance = np.mean([np.mean([m == q.extra["modality"] for m in modalities]) for q in queries])
    for mode, floor in (("images", 0.6), ("captions", 0.5)):
        found = phantom_retriever.search_records(queries, 5, mode=mode)  # type: ignore[arg-type]
        top1 = np.mean(
            [
                hs[0].extra["modality"] == q.extra["modality"]
                for q, hs in zip(queries, found, strict=True)
            ]
        )
        assert top1 >= floor and top1 > chance + 0.25, (mode, top1, chance)


def test_k_beyond_the_index_is_clamped(
    phantom_retriever: Retriever, caplog: pytest.LogCaptureFixture
) -> None:
    n = len(phantom_retriever.index)
    with caplog.at_level(logging.WARNING):
        hits = phantom_retriever.search_texts(["CT of the chest"], n + 50, mode="images")
    assert len(hits[0]) == n
    assert f"k={n + 50} is larger than the index ({n} cases)" in caplog.text
    scores = [h.score for h in hits[0]]
    assert scores == sorted(scores, reverse=True)


def test_another_encoder_is_refused_naming_both(
    phantom_retriever: Retriever, tiny_encoder: Any, phantom_index_dir: Path
) -> None:
    with pytest.raises(IndexMismatchError) as err:
        Retriever(tiny_encoder, phantom_retriever.index)
    message = str(err.value)
    assert tiny_encoder.fingerprint in message and phantom_retriever.encoder.fingerprint in message
    with pytest.raises(IndexMismatchError):
        open_retriever(phantom_index_dir, device="cpu", model="medcap-tiny")


def test_moved_checkpoint_says_how_to_pass_model(
    phantom_index_dir: Path, tmp_path: Path, trained_checkpoint: Path
) -> None:
    copy = tmp_path / "index"
    shutil.copytree(phantom_index_dir, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["encoder"]["checkpoint"] = str(tmp_path / "gone" / "best.pt")
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="no longer exists; pass --model"):
        open_retriever(copy, device="cpu")
    retriever = open_retriever(copy, device="cpu", model=str(trained_checkpoint))
    assert len(retriever.search_texts(["MRI of the brain"], 3)[0]) == 3


def test_unknown_mode_is_an_input_error(phantom_retriever: Retriever) -> None:
    with pytest.raises(InputError, match="unknown search mode"):
        phantom_retriever.search_texts(["x"], 3, mode="pixels")  # type: ignore[arg-type]


def test_index_stores_thumbnails_for_in_parquet_images(phantom_retriever: Retriever) -> None:
    import io

    from PIL import Image

    index = phantom_retriever.index
    thumb = index.thumbnail(index.image_ids()[0])
    assert thumb is not None
    image = Image.open(io.BytesIO(thumb))
    assert image.format == "JPEG" and max(image.size) <= 32
    assert index.thumbnail("not-there") is None
