"""Concept voting and sample-averaged F1 on hand-worked cases."""

from __future__ import annotations

import pytest

from medcap.evaluation.concepts import (
    concept_f1,
    concept_f1_per_query,
    predict_concepts,
    threshold_sweep,
    vote_concepts,
)


def test_similarity_weighted_vote() -> None:
    cuis = [["A", "B"], ["A"], ["C"]]
    scores = [0.5, 0.3, 0.2]  # total 1.0: A 0.8, B 0.5, C 0.2
    assert vote_concepts(cuis, scores, k=3) == pytest.approx({"A": 0.8, "B": 0.5, "C": 0.2})
    assert predict_concepts([cuis], [scores], k=3, threshold=0.5) == [{"A", "B"}]
    assert predict_concepts([cuis], [scores], k=3, threshold=0.6) == [{"A"}]
    # only the first two vote: total 0.8 -> A 1.0, B 0.625
    assert predict_concepts([cuis], [scores], k=2, threshold=0.6) == [{"A", "B"}]


def test_negative_and_zero_similarities() -> None:
    assert vote_concepts([["A"], ["B"]], [0.4, -0.2], k=2) == pytest.approx({"A": 1.0, "B": 0.0})
    assert vote_concepts([["A"], ["B"]], [0.0, 0.0], k=2) == pytest.approx({"A": 0.5, "B": 0.5})
    assert vote_concepts([], [], k=3) == {}
    with pytest.raises(ValueError):
        predict_concepts([[["A"]]], [[1.0]], k=0, threshold=0.5)


def test_sample_averaged_f1_as_imageclef() -> None:
    gold = [{"A", "B"}, set(), set(), {"A"}]
    pred = [{"A", "C"}, set(), {"A"}, set()]
    # 2*1/(2+2) = 0.5; both empty = 1; gold empty, prediction not = 0; missed all = 0
    assert concept_f1_per_query(gold, pred) == [0.5, 1.0, 0.0, 0.0]
    assert concept_f1(gold, pred) == pytest.approx(0.375)
    assert concept_f1([{"A", "B", "C"}], [{"A", "B"}]) == pytest.approx(0.8)


def test_threshold_sweep_agrees_with_prediction() -> None:
    cuis = [[["A", "B"], ["A"], ["C"]], [["C"], ["C", "D"]]]
    scores = [[0.5, 0.3, 0.2], [0.9, 0.1]]
    gold = [{"A"}, {"C", "D"}]
    thresholds = [0.1, 0.3, 0.5, 0.9]
    sweep = threshold_sweep(cuis, scores, gold, k=3, thresholds=thresholds)
    for t, f1 in zip(thresholds, sweep, strict=True):
        assert f1 == pytest.approx(
            concept_f1(gold, predict_concepts(cuis, scores, k=3, threshold=t))
        )
    # at 0.5: {A, B} vs {A} -> 2/3; {C} vs {C, D} -> 2/3
    assert sweep[2] == pytest.approx(2 / 3)
