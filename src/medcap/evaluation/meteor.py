"""METEOR 1.5 through the jar that ships with pycocoevalcap (COCO's exact METEOR).

METEOR's stemmer, synonym and paraphrase tables live in the Java tool; re-implementing
them would not reproduce its numbers, so medcap runs the same jar COCO runs. When Java or
pycocoevalcap is missing, `meteor_unavailable_reason` says why and no number is reported.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def meteor_unavailable_reason() -> str | None:
    """None when METEOR can run here, else a one-line reason with the fix."""
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "METEOR needs pycocoevalcap (its METEOR 1.5 jar): pip install 'medcap[eval]'"
    if shutil.which("java") is None:
        return "METEOR needs Java to run the METEOR 1.5 jar: install a Java runtime (JRE 8+)"
    return None


def meteor(
    candidates: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[float, list[float]]:
    """Corpus METEOR and per-item scores of tokenised captions (COCO's jar and settings).

    Raises RuntimeError when the jar cannot run (check `meteor_unavailable_reason` first).
    """
    from pycocoevalcap.meteor.meteor import Meteor

    if not candidates:
        return 0.0, []
    gts = {i: [ref.replace("\n", " ") for ref in refs] for i, refs in enumerate(references)}
    res = {i: [cand.replace("\n", " ")] for i, cand in enumerate(candidates)}
    scorer = Meteor()
    try:
        score, scores = scorer.compute_score(gts, res)
    except (ValueError, OSError, BrokenPipeError) as exc:  # the jar died or printed an error
        raise RuntimeError(f"the METEOR jar failed: {exc}") from exc
    finally:
        _close(scorer)
    return float(score), [float(s) for s in scores]


def _close(scorer: object) -> None:
    """Stop the jar now: pycocoevalcap's __del__ closes it, but would block on a held lock."""
    lock = getattr(scorer, "lock", None)
    if lock is not None and lock.locked():
        lock.release()
    del scorer
    logger.debug("METEOR jar stopped")
