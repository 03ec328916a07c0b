"""Nearest-neighbour consensus captioning: return the neighbour caption the others agree with most.

Devlin et al. (2015): among the captions of the retrieved neighbours, pick the one with the
highest mean similarity to the rest. Similarity is CIDEr-D (evaluation's implementation, with
document frequencies counted over the query's own neighbour captions) or token F1. No
language model, deterministic, CPU only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medcap.config import DEFAULTS, GenerationConfig
from medcap.errors import InputError
from medcap.evaluation.coco_metrics import CIDER_SCALE, cider_similarity, cider_vector, ngram_counts
from medcap.generation.backends.base import BaseBackend

if TYPE_CHECKING:
    from PIL.Image import Image

    from medcap.generation.prompt import Prompt

SIMILARITIES = ("cider-d", "token-f1")
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercased alphanumeric tokens (punctuation dropped)."""
    return _TOKEN.findall(text.lower())


def cider_d_matrix(captions: Sequence[str]) -> list[list[float]]:
    """Pairwise CIDEr-D between captions (row = candidate, column = reference), diagonal 0.

    The CIDEr-D of `medcap.evaluation.coco_metrics`, with the captions themselves as the
    documents the idf is counted over.
    """
    counts = [ngram_counts(tokenize(c)) for c in captions]
    n_docs = len(captions)
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for grams in counts:
        doc_freq.update(grams.keys())
    log_docs = math.log(max(1.0, n_docs))
    vectors = [cider_vector(grams, doc_freq, log_docs) for grams in counts]
    scores = [[0.0] * n_docs for _ in range(n_docs)]
    for i in range(n_docs):
        for j in range(n_docs):
            if i != j:
                per_n = cider_similarity(vectors[i], vectors[j])
                scores[i][j] = CIDER_SCALE * sum(per_n) / len(per_n)
    return scores


def token_f1_matrix(captions: Sequence[str]) -> list[list[float]]:
    """Pairwise token-overlap F1 (bag of words), diagonal 0."""
    bags = [Counter(tokenize(c)) for c in captions]
    size = len(captions)
    scores = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(size):
            if i == j:
                continue
            overlap = sum((bags[i] & bags[j]).values())
            total = sum(bags[i].values()) + sum(bags[j].values())
            scores[i][j] = 2.0 * overlap / total if total else 0.0
    return scores


def pick_consensus(captions: Sequence[str], similarity: str = "cider-d") -> int:
    """Index of the caption with the highest mean similarity to the others.

    Ties go to the earliest caption, i.e. the best-ranked neighbour, so the result is
    deterministic; with one caption (or none to compare) that is index 0.
    """
    if not captions:
        raise ValueError("pick_consensus needs at least one caption")
    if len(captions) == 1:
        return 0
    matrix = cider_d_matrix(captions) if similarity == "cider-d" else token_f1_matrix(captions)
    means = [sum(row) / (len(captions) - 1) for row in matrix]
    best = max(means)
    # A small tolerance keeps float noise from breaking ties between identical captions.
    return next(i for i, m in enumerate(means) if m >= best - 1e-12)


class ConsensusBackend(BaseBackend):
    """The model-free default backend: returns one neighbour caption exactly as written."""

    name = "consensus"

    def __init__(
        self,
        *,
        cfg: GenerationConfig = DEFAULTS.generation,
        similarity: str | None = None,
        model_id: str | None = None,
        adapter: object | None = None,
    ) -> None:
        if model_id or adapter:
            raise InputError(
                "the consensus backend uses no model; drop --model/--adapter "
                "or pick --backend qwen2-vl"
            )
        similarity = similarity or cfg.consensus_similarity
        if similarity not in SIMILARITIES:
            raise InputError(
                f"unknown consensus similarity {similarity!r}; choose one of {SIMILARITIES}"
            )
        self.similarity = similarity
        self.model = f"consensus:{similarity}"

    def generate(self, images: Sequence[Image], prompts: Sequence[Prompt]) -> list[str]:
        """Pick each prompt's consensus neighbour caption; images are not looked at."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for prompt in prompts:
            captions = prompt.neighbour_captions
            out.append(captions[pick_consensus(captions, self.similarity)] if captions else "")
        return out
