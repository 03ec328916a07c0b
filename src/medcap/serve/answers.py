"""The JSON shapes the service answers with (hits, cases, captions) and their OpenAPI
descriptions. Answers are built as plain dicts (no validation on the hot path); the
pydantic models only document them at /docs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel

from medcap.types import Hit

if TYPE_CHECKING:
    from medcap.generation.captioning import CaptionResult


def case_path(image_id: str) -> str:
    """The URL path of a case (`/v1/cases/{image_id}`, the id quoted: `/` becomes %2F)."""
    return f"/v1/cases/{quote(image_id, safe='')}"


def case_json(hit: Hit) -> dict[str, Any]:
    """One case: id, caption, concepts, split, metadata and where its thumbnail is; with
    `viewer_url` when the service links DICOM studies to a viewer (--viewer-url)."""
    metadata = dict(hit.metadata)
    viewer_url = metadata.pop("viewer_url", None)
    return {
        "image_id": hit.image_id,
        "caption": hit.caption,
        "cuis": list(hit.cuis),
        "split": hit.split,
        "metadata": metadata,
        "thumbnail_url": case_path(hit.image_id) + "/thumbnail",
        **({"viewer_url": viewer_url} if viewer_url else {}),
    }


def hit_json(hit: Hit) -> dict[str, Any]:
    """One search result: its rank (1-based), cosine score and case."""
    return {"rank": hit.rank, "score": float(hit.score), **case_json(hit)}


def caption_json(result: CaptionResult, took_ms: float) -> dict[str, Any]:
    """A caption with the neighbours and the prompt it was made from."""
    return {
        "caption": result.text,
        "backend": result.backend,
        "model": result.model,
        "neighbours": [hit_json(h) for h in result.neighbours],
        "prompt": {"text": result.prompt.text, "template": result.prompt.template},
        "took_ms": took_ms,
    }


# ---- OpenAPI descriptions ---------------------------------------------------------------
class CaseModel(BaseModel):
    """An indexed case; `thumbnail_url` is a path on this server."""

    image_id: str
    caption: str
    cuis: list[str]
    split: str
    metadata: dict[str, Any]
    thumbnail_url: str
    viewer_url: str | None = None  # a DICOM study in the viewer (--pseudonym-key, --viewer-url)


class HitModel(CaseModel):
    """A search result: rank 1 is the best; score is cosine similarity in [-1, 1]."""

    rank: int
    score: float


class SearchAnswer(BaseModel):
    """Hits for one query, best first; `query` says what was searched (never image bytes)."""

    query: dict[str, Any]
    mode: str
    hits: list[HitModel]
    took_ms: float


class PromptModel(BaseModel):
    """The prompt the caption backend read."""

    text: str
    template: str


class CaptionAnswer(BaseModel):
    """A caption from the neighbours' captions, with that evidence."""

    caption: str
    backend: str
    model: str
    neighbours: list[HitModel]
    prompt: PromptModel
    took_ms: float


class ErrorAnswer(BaseModel):
    """Every refusal: one line saying what is wrong and what to do."""

    error: str
