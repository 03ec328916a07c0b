"""Validation during training: Recall@1/5/10 and median rank, image->text and text->image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medcap.encoder.decode import normalize
from medcap.encoder.encoder import autocast
from medcap.train.data import CaseTensors

RECALL_KS = (1, 5, 10)


@torch.inference_mode()
def embed_case_tensors(
    model: Any,
    cases: CaseTensors,
    *,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    dtype: torch.dtype | None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image (m, d), text (m, d), kept case indices), float32 L2-normalised, no augmentation."""
    was_training = model.training
    model.eval()
    image_out, text_out, kept = [], [], []
    order = list(range(len(cases)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for index, images, rows in cases.image_batches(batches):
        pixels = normalize(images.to(device), mean, std)
        tokens = cases.tokens[rows.to(cases.tokens.device)].to(device)
        with autocast(device, dtype):
            img = model.encode_image(pixels)
            txt = model.encode_text(tokens)
        image_out.append(torch.nn.functional.normalize(img.float(), dim=-1).cpu().numpy())
        text_out.append(torch.nn.functional.normalize(txt.float(), dim=-1).cpu().numpy())
        kept.extend(index)
    model.train(was_training)
    if not kept:
        empty = np.zeros((0, 1), dtype=np.float32)
        return empty, empty, []
    return np.concatenate(image_out), np.concatenate(text_out), kept


def retrieval_metrics(image: np.ndarray, text: np.ndarray) -> dict[str, float]:
    """Pair i is (image i, text i). Keys: i2t_R@k, t2i_R@k (fractions), *_median_rank (1-based),
    mean_recall (the mean of all six recalls; the best-checkpoint criterion), n."""
    from medcap.retrieval.metrics import median_rank, ranks_from_scores, recall_at_k

    scores = image @ text.T
    truth = np.arange(len(image))
    out: dict[str, float] = {"n": float(len(image))}
    recalls = []
    for name, matrix in (("i2t", scores), ("t2i", scores.T)):
        ranks = ranks_from_scores(matrix, truth)
        for k in RECALL_KS:
            out[f"{name}_R@{k}"] = recall_at_k(ranks, k)
            recalls.append(out[f"{name}_R@{k}"])
        out[f"{name}_median_rank"] = median_rank(ranks)
    out["mean_recall"] = float(np.mean(recalls))
    return out


def validate(
    model: Any,
    cases: CaseTensors,
    *,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    dtype: torch.dtype | None,
) -> dict[str, float]:
    """Retrieval metrics of `model` on the validation cases (see retrieval_metrics)."""
    image, text, _ = embed_case_tensors(
        model, cases, device=device, mean=mean, std=std, batch_size=batch_size, dtype=dtype
    )
    return retrieval_metrics(image, text)
