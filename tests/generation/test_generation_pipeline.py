"""The captioning pipeline on a real phantom index: neighbours, self-exclusion, batch runs."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS
from medcap.data.images import load_image
from medcap.generation.backends import get_backend
from medcap.generation.captioning import (
    build_training_examples,
    caption_images,
    caption_images_with_neighbours,
)
from medcap.runs.caption import BatchRun, caption_split

CFG = replace(DEFAULTS.generation, k=4, batch_size=8, checkpoint_every=6, device="cpu")


def _train_cases(dataset: Any, n: int) -> list[Any]:
    return list(dataset.records("train"))[:n]


def test_indexed_queries_never_see_themselves(phantom_dataset: Any, phantom_retriever: Any) -> None:
    records = _train_cases(phantom_dataset, 6)
    images = [load_image(r.image) for r in records]
    ids = [r.image_id for r in records]
    consensus = get_backend("consensus", cfg=CFG)
    excluded = caption_images_with_neighbours(phantom_retriever, consensus, images, ids, CFG)
    included = caption_images_with_neighbours(phantom_retriever, consensus, images, [None] * 6, CFG)
    for own, (caption, prompt) in zip(ids, excluded, strict=True):
        assert own not in caption.neighbour_ids
        assert len(caption.neighbour_ids) == CFG.k == len(caption.neighbour_scores)
        assert list(caption.neighbour_scores) == sorted(caption.neighbour_scores, reverse=True)
        assert caption.text in prompt.neighbour_captions  # consensus copies a neighbour
        assert caption.backend == "consensus" and caption.latency_s > 0
    # Without exclusion an indexed image finds itself: the exclusion is what removes it.
    assert any(own in c.neighbour_ids for own, (c, _) in zip(ids, included, strict=True))


def test_tiny_qwen2vl_through_the_pipeline(
    phantom_dataset: Any, phantom_retriever: Any, tiny_qwen: Any
) -> None:
    records = list(phantom_dataset.records("test"))[:3]
    images = [load_image(r.image) for r in records]
    model, processor = tiny_qwen()
    cfg = replace(CFG, backend="qwen2-vl", max_new_tokens=5)
    backend = get_backend("qwen2-vl", model=model, processor=processor, cfg=cfg)
    captions = caption_images(
        phantom_retriever, backend, images, [r.image_id for r in records], cfg
    )
    assert [c.backend for c in captions] == ["qwen2-vl"] * 3
    assert all(c.text and len(c.neighbour_ids) == cfg.k for c in captions)


def test_batch_run_over_the_test_split(
    phantom_dir: Path,
    phantom_dataset: Any,
    phantom_index_dir: Path,
    phantom_retriever: Any,
    tmp_path: Path,
) -> None:
    from medcap.evaluation.caption_metrics import compute_caption_metrics

    def score_captions(refs: list[str], cands: list[str]) -> dict[str, float]:
        return compute_caption_metrics(refs, cands, use_meteor=False).metrics  # no Java here

    out = tmp_path / "results.csv"
    run = BatchRun(
        data=str(phantom_dir), split="test", index_dir=str(phantom_index_dir), out=str(out)
    )
    summary = caption_split(run, CFG, retriever=phantom_retriever, progress=False)
    test = list(phantom_dataset.records("test"))
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert summary.written == len(rows) == len(test)
    assert sorted(r["image_id"] for r in rows) == sorted(r.image_id for r in test)
    assert {r["split"] for r in rows} == {"test"} and {r["backend"] for r in rows} == {"consensus"}
    info = json.loads(out.with_suffix(".run.json").read_text())
    assert info["written"] == len(test) and info["generation"]["k"] == CFG.k

    # Neighbour captions agree with the truth far more than random training captions do.
    references = [r["original_caption"] for r in rows]
    train_captions = [r.caption for r in phantom_dataset.records("train")]
    rng = random.Random(0)
    chance = score_captions(references, [rng.choice(train_captions) for _ in rows])
    ours = score_captions(references, [r["generated_caption"] for r in rows])
    assert ours["CIDEr"] > 1.5 * chance["CIDEr"]
    assert ours["ROUGE-L"] > chance["ROUGE-L"]

    again = caption_split(run, CFG, retriever=phantom_retriever, progress=False)
    assert again.written == 0 and again.resumed == len(test)


def test_training_examples_exclude_the_case_itself(
    phantom_dataset: Any, phantom_retriever: Any, tiny_blip2: Any, tmp_path: Path
) -> None:
    from medcap.train.lora import train_lora

    records = _train_cases(phantom_dataset, 8)
    cfg = replace(CFG, template="smallcap", lora_max_steps=2, lora_batch_size=4, lora_r=4)
    examples = build_training_examples(records, phantom_retriever, cfg)
    for record, example in zip(records, examples, strict=True):
        assert record.image_id not in example.prompt.neighbour_ids
        assert len(example.prompt.neighbour_ids) == cfg.k
        assert example.target == record.caption
    model, processor = tiny_blip2()
    result = train_lora(model, processor, examples, tmp_path / "ad", kind="blip2-lora", cfg=cfg)
    assert result.steps == 2  # images are decoded lazily from the records' references


def test_training_needs_a_generator_backend() -> None:
    from medcap.errors import InputError
    from medcap.train.generator import train_generator

    with pytest.raises(InputError, match="cannot fine-tune backend 'consensus'"):
        train_generator("unused", "unused", "unused", replace(CFG, backend="consensus"))
