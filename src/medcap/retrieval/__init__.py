"""Retrieval: search an index by image or text (Retriever); retrieval metrics and evaluation.

`Retriever` and `open_retriever` load lazily so that `medcap.retrieval.metrics` stays a
pure-numpy import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medcap.retrieval.refine import Refinement
    from medcap.retrieval.retriever import (
        QueryEncoder,
        Retriever,
        load_index_encoder,
        open_retriever,
        resolve_model,
    )

__all__ = [
    "QueryEncoder",
    "Refinement",
    "Retriever",
    "load_index_encoder",
    "open_retriever",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name == "Refinement":
        from medcap.retrieval import refine

        return refine.Refinement
    if name in __all__:
        from medcap.retrieval import retriever

        return getattr(retriever, name)
    raise AttributeError(f"module 'medcap.retrieval' has no attribute {name!r}")
