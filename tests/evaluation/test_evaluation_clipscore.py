"""CLIPScore / RefCLIPScore (hand-worked and with the tiny encoder) and BERTScore's gates."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medcap.evaluation.bertscore import bertscore_f1, bertscore_unavailable_reason
from medcap.evaluation.clipscore import clip_scores_from_embeddings, compute_clipscores
from medcap.runs.evaluate import load_images_by_id


def test_clipscore_hand_worked() -> None:
    image = np.array([[1.0, 0.0], [1.0, 0.0]])
    cand = np.array([[0.6, 0.8], [-1.0, 0.0]])
    refs = [np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 1.0]])]
    clip_s, refclip_s = clip_scores_from_embeddings(image, cand, refs)
    # item 1: cos 0.6 -> 2.5 * 0.6 = 1.5; best reference cos 0.8 -> H-mean(1.5, 0.8)
    # item 2: cos -1 -> clipped to 0; reference cos 0 -> RefCLIP-S 0
    assert clip_s == pytest.approx([1.5, 0.0])
    assert refclip_s == pytest.approx([2 * 1.5 * 0.8 / 2.3, 0.0])
    assert clip_scores_from_embeddings(image, cand)[1] is None


def test_compute_clipscores_with_the_tiny_encoder(tiny_encoder: Any, phantom_dir: Path) -> None:
    from medcap.data import open_dataset
    from medcap.data.images import load_image

    records = list(open_dataset(phantom_dir).records("test"))[:3]
    images = [load_image(r.image) for r in records]
    candidates = [r.caption for r in records[::-1]]
    references = [[r.caption] for r in records]
    out = compute_clipscores(tiny_encoder, images, candidates, references, batch_size=2)
    img = tiny_encoder.encode_images(images)
    cand = tiny_encoder.encode_texts(candidates)
    ref = tiny_encoder.encode_texts([r.caption for r in records])
    clip_s, refclip_s = clip_scores_from_embeddings(img, cand, [ref[i : i + 1] for i in range(3)])
    assert out["per_item"]["CLIPScore"] == pytest.approx(clip_s.tolist(), abs=1e-5)
    assert out["RefCLIPScore"] == pytest.approx(float(refclip_s.mean()), abs=1e-5)


def test_images_are_found_by_id_and_missing_ones_listed(phantom_dir: Path) -> None:
    from medcap.data import open_dataset

    wanted = [r.image_id for r in open_dataset(phantom_dir).records("valid")][:2]
    images, skipped = load_images_by_id(phantom_dir, [*wanted, "no-such-case"])
    assert sorted(images) == sorted(wanted)
    assert [s.image_id for s in skipped] == ["no-such-case"]


def test_bertscore_refuses_a_model_that_is_not_local() -> None:
    reason = bertscore_unavailable_reason("microsoft/deberta-xlarge-mnli")
    assert reason is not None
    assert "not on this machine" in reason or "bert_score" in reason


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bert_score") is None, reason="needs bert_score")
def test_bertscore_with_a_tiny_local_model(tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [*special, "ct", "mri", "of", "the", "chest", "knee", "a", "nodule", "axial"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(tmp_path)
    BertTokenizer(str(tmp_path / "vocab.txt"), model_max_length=64).save_pretrained(tmp_path)
    assert bertscore_unavailable_reason(str(tmp_path)) is None
    mean, scores = bertscore_f1(
        ["axial ct of the chest", "mri of the knee"],
        [["axial ct of the chest"], ["ct showing a nodule"]],
        model=str(tmp_path),
        num_layers=2,
        device="cpu",
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] < 0.999
    assert mean == pytest.approx(sum(scores) / 2)
