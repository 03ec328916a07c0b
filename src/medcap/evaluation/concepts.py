"""Concept (UMLS CUI) detection by neighbour voting, scored as ImageCLEFmedical does.

Prediction: each neighbour votes for its concepts with weight max(similarity, 0); a concept
is predicted when its share of the total vote reaches the threshold. With all weights zero
the neighbours vote equally. Scoring: F1 per query between the gold and predicted concept
sets, averaged over queries (sample-averaged F1); a query whose gold and predicted sets are
both empty scores 1, as in the ImageCLEFmedical concept-detection evaluator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np


def vote_concepts(
    neighbour_cuis: Sequence[Iterable[str]], neighbour_scores: Sequence[float], *, k: int
) -> dict[str, float]:
    """Each concept's share of the similarity-weighted vote of the first `k` neighbours."""
    cuis = [set(c) for c in list(neighbour_cuis)[:k]]
    weights = np.maximum(np.asarray(list(neighbour_scores)[:k], dtype=np.float64), 0.0)
    if len(cuis) != len(weights):
        raise ValueError(f"{len(cuis)} neighbour concept sets but {len(weights)} scores")
    if not cuis:
        return {}
    if weights.sum() <= 0:
        weights = np.ones(len(cuis))
    total = float(weights.sum())
    votes: dict[str, float] = defaultdict(float)
    for concepts, weight in zip(cuis, weights, strict=True):
        for cui in concepts:
            votes[cui] += float(weight) / total
    return dict(votes)


def predict_concepts(
    neighbour_cuis: Sequence[Sequence[Iterable[str]]],
    neighbour_scores: Sequence[Sequence[float]],
    *,
    k: int,
    threshold: float,
) -> list[set[str]]:
    """Predicted concept set of each query from its neighbours (see the module docstring).

    Args:
        neighbour_cuis: per query, the concepts of each neighbour, best neighbour first.
        neighbour_scores: per query, each neighbour's cosine similarity.
        k: neighbours that vote (the first k).
        threshold: minimum share of the vote, in (0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [
        {
            cui
            for cui, share in vote_concepts(cuis, scores, k=k).items()
            if share >= threshold - 1e-12
        }
        for cuis, scores in zip(neighbour_cuis, neighbour_scores, strict=True)
    ]


def concept_f1_per_query(
    gold: Sequence[Iterable[str]], predicted: Sequence[Iterable[str]]
) -> list[float]:
    """F1 of each query's predicted set against its gold set (both empty: 1.0)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sets but {len(predicted)} predictions")
    scores = []
    for g, p in zip(gold, predicted, strict=True):
        g_set, p_set = set(g), set(p)
        if not g_set and not p_set:
            scores.append(1.0)
        else:
            scores.append(2 * len(g_set & p_set) / (len(g_set) + len(p_set)))
    return scores


def concept_f1(gold: Sequence[Iterable[str]], predicted: Sequence[Iterable[str]]) -> float:
    """Sample-averaged F1 over queries (ImageCLEFmedical concept detection)."""
    scores = concept_f1_per_query(gold, predicted)
    return float(np.mean(scores)) if scores else float("nan")


def threshold_sweep(
    neighbour_cuis: Sequence[Sequence[Iterable[str]]],
    neighbour_scores: Sequence[Sequence[float]],
    gold: Sequence[Iterable[str]],
    *,
    k: int,
    thresholds: Sequence[float],
) -> list[float]:
    """Sample-averaged F1 at each threshold (the votes are computed once)."""
    votes = [
        vote_concepts(c, s, k=k) for c, s in zip(neighbour_cuis, neighbour_scores, strict=True)
    ]
    return [
        concept_f1(gold, [{c for c, share in v.items() if share >= t - 1e-12} for v in votes])
        for t in thresholds
    ]
