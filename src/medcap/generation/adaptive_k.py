"""Adaptive k: how many neighbours a caption prompt keeps, from where their similarity drops.

Retrieved context helps while it is relevant and hurts after (MMed-RAG truncates it the same
way). The search asks for `auto_k_max` neighbours; the list is cut after the largest drop
between consecutive scores, at or after `auto_k_min`, when that drop is sharp: at least
`auto_k_gap_ratio` times the mean drop over the whole list. Without a sharp drop every
neighbour is kept. Ties and flat lists therefore keep the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

from medcap.config import DEFAULTS, GenerationConfig


def choose_k(scores: Sequence[float], cfg: GenerationConfig = DEFAULTS.generation) -> int:
    """Neighbours to keep from `scores` (similarities, best first), in [auto_k_min, auto_k_max]
    (fewer only when fewer neighbours were found).

    >>> choose_k([0.9, 0.88, 0.87, 0.5, 0.49, 0.48])
    3
    """
    s = [float(v) for v in scores][: cfg.auto_k_max]
    if len(s) <= cfg.auto_k_min:
        return len(s)
    mean_drop = (s[0] - s[-1]) / (len(s) - 1)
    best_keep, best_drop = len(s), 0.0
    for keep in range(cfg.auto_k_min, len(s)):  # cut after `keep` neighbours
        drop = s[keep - 1] - s[keep]
        if drop > best_drop:
            best_keep, best_drop = keep, drop
    if mean_drop <= 0.0 or best_drop < cfg.auto_k_gap_ratio * mean_drop:
        return len(s)
    return best_keep
