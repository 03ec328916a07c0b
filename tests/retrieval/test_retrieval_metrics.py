"""Rank metrics against a brute-force sort written here and against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from medcap.retrieval.metrics import (
    mean_rank,
    median_rank,
    ranks_from_scores,
    recall_at_k,
    same_value_mask,
    summarize_ranks,
)


def _brute_force_ranks(scores: np.ndarray, relevant: np.ndarray, pessimistic: bool) -> list[int]:
    """Sort each row by score, put ties on the chosen side, return the first relevant position."""
    ranks = []
    for row, rel in zip(scores.tolist(), relevant.tolist(), strict=True):
        # pessimistic: at equal score, irrelevant items (False) sort before relevant ones
        order = sorted(
            range(len(row)), key=lambda j: (-row[j], rel[j] if pessimistic else not rel[j])
        )
        ranks.append(next(pos for pos, j in enumerate(order) if rel[j]))
    return ranks


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_match_brute_force_with_ties(ties: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, g = 37, 53
    # few distinct values, so ties are everywhere
    scores = rng.integers(0, 6, size=(q, g)).astype(np.float32)
    positives = rng.integers(0, g, size=q)
    relevant = np.zeros((q, g), dtype=bool)
    relevant[np.arange(q), positives] = True
    expected = _brute_force_ranks(scores, relevant, ties == "pessimistic")
    assert ranks_from_scores(scores, positives, ties=ties).tolist() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_multi_relevant_ranks_match_brute_force(ties: str) -> None:
    rng = np.random.default_rng(7)
    q, g = 40, 30
    scores = rng.integers(0, 4, size=(q, g)).astype(np.float64)
    keys_q = rng.integers(0, 8, size=q)
    keys_g = rng.integers(0, 8, size=g)
    keys_g[keys_q[:8]] = keys_q[:8]  # make sure the first keys exist in the gallery
    keep = np.isin(keys_q, keys_g)
    mask = same_value_mask(keys_q[keep], keys_g)
    expected = _brute_force_ranks(scores[keep], mask, ties == "pessimistic")
    assert ranks_from_scores(scores[keep], mask, ties=ties).tolist() == expected  # type: ignore[arg-type]


def test_chunked_computation_matches_brute_force_on_large_query_sets() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2500, 20)).astype(np.float32)  # more rows than one chunk
    positives = rng.integers(0, 20, size=2500)
    relevant = np.zeros(scores.shape, dtype=bool)
    relevant[np.arange(2500), positives] = True
    assert ranks_from_scores(scores, positives).tolist() == _brute_force_ranks(
        scores, relevant, True
    )


def test_hand_worked_three_by_three() -> None:
    # query 0: positive (col 0) has the top score -> rank 0
    # query 1: positive (col 1) = 0.5, beaten by 0.9 -> rank 1
    # query 2: positive (col 2) = 0.1, beaten by 0.3 and 0.2 -> rank 2
    scores = np.array([[0.9, 0.1, 0.2], [0.9, 0.5, 0.1], [0.3, 0.2, 0.1]])
    ranks = ranks_from_scores(scores, np.array([0, 1, 2]))
    assert ranks.tolist() == [0, 1, 2]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 3) == 1.0
    assert median_rank(ranks) == 2.0  # floor(median(0, 1, 2)) + 1
    assert mean_rank(ranks) == 2.0  # mean(0, 1, 2) + 1


def test_hand_worked_ties() -> None:
    # row 0: all equal -> pessimistic places the positive last (rank 3), optimistic first (0)
    # row 1: positive 0.5 ties one item, one item is higher -> pessimistic 2, optimistic 1
    scores = np.array([[0.4, 0.4, 0.4, 0.4], [0.5, 0.7, 0.5, 0.1]])
    positives = np.array([2, 0])
    assert ranks_from_scores(scores, positives).tolist() == [3, 2]
    assert ranks_from_scores(scores, positives, ties="optimistic").tolist() == [0, 1]


def test_hand_worked_duplicate_captions() -> None:
    # Gallery captions: c0 "a", c1 "b", c2 "a", c3 "c". Query 0 is paired with c0, whose
    # caption "a" is also c2's. Scores: c3 0.9, c2 0.8, c0 0.6, c1 0.2.
    scores = np.array([[0.6, 0.2, 0.8, 0.9]])
    # paired item only: c3 and c2 are ahead -> rank 2
    assert ranks_from_scores(scores, np.array([0])).tolist() == [2]
    # identical captions relevant: best relevant is c2 (0.8), only c3 ahead -> rank 1
    mask = same_value_mask(np.array([0]), np.array([0, 1, 0, 2]))
    assert mask.tolist() == [[True, False, True, False]]
    assert ranks_from_scores(scores, mask).tolist() == [1]
    # a relevant item tying with another relevant one never counts against the query
    tied = np.array([[0.8, 0.2, 0.8, 0.1]])
    assert ranks_from_scores(tied, mask).tolist() == [0]


def test_median_rank_floors_even_counts() -> None:
    ranks = np.array([0, 1, 2, 5])  # median 1.5 -> floor 1 -> +1 = 2
    assert median_rank(ranks) == 2.0
    assert mean_rank(ranks) == pytest.approx(3.0)
    summary = summarize_ranks(ranks, [1, 5])
    assert summary == {"R@1": 0.25, "R@5": 0.75, "median_rank": 2.0, "mean_rank": 3.0, "n": 4.0}


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive indices"):
        ranks_from_scores(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="at least one relevant"):
        ranks_from_scores(np.zeros((1, 2)), np.array([[False, False]]))
    with pytest.raises(ValueError, match=r"\(q, g\)"):
        ranks_from_scores(np.zeros(3), np.array([0]))
