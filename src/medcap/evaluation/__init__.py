"""Evaluation: caption metrics (COCO definitions), concept F1, CLIPScore, reports and plots.

Heavy optional parts (METEOR's jar, BERTScore, matplotlib) load only when used.
"""

from __future__ import annotations

from medcap.evaluation.caption_metrics import score_captions
from medcap.evaluation.concepts import concept_f1, predict_concepts
from medcap.evaluation.report import compare_reports, write_report

__all__ = ["compare_reports", "concept_f1", "predict_concepts", "score_captions", "write_report"]
