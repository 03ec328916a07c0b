"""Result cards: what the browser shows for one case (thumbnail, caption, score, metadata)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from medcap.config import current
from medcap.errors import MedcapError
from medcap.types import Hit

if TYPE_CHECKING:
    from PIL import Image

    from medcap.app.cases import CaseInfo


@dataclass(frozen=True)
class CaseCard:
    """One case ready to render. `score` is cosine similarity; `rank` is 1-based."""

    image_id: str
    caption: str
    cuis: tuple[str, ...] = ()
    split: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    rank: int | None = None
    score: float | None = None
    thumbnail: Image.Image | None = field(default=None, repr=False)
    thumbnail_error: str | None = None  # why there is no thumbnail
    viewer_url: str | None = None  # the DICOM study in the hospital's viewer, when linked

    def headline(self) -> str:
        """`#1 · 0.873 · train`: rank, score and split, whichever are known."""
        parts = []
        if self.rank is not None:
            parts.append(f"#{self.rank}")
        if self.score is not None:
            parts.append(f"{self.score:.3f}")
        if self.split:
            parts.append(self.split)
        return " · ".join(parts)

    def metadata_line(self) -> str:
        """`CT · chest · nodule`: the metadata values in column order."""
        return " · ".join(str(v) for v in self.metadata.values() if str(v))


class CaseView(Protocol):
    """What a card needs to know of the cases: a local CaseTable or a service's RemoteCases."""

    def info(self, image_id: str) -> CaseInfo: ...

    def thumbnail(self, image_id: str, max_px: int) -> Image.Image: ...

    def card_metadata(self, image_id: str, fields: Sequence[str] = ()) -> dict[str, str]: ...


def card_for(
    cases: CaseView,
    image_id: str,
    *,
    rank: int | None = None,
    score: float | None = None,
    thumbnail_px: int | None = None,
) -> CaseCard:
    """A card for an indexed case; a thumbnail that fails to decode becomes a message."""
    info = cases.info(image_id)
    thumb, error = None, None
    if thumbnail_px:
        try:
            thumb = cases.thumbnail(image_id, thumbnail_px)
        except MedcapError as exc:
            error = str(exc)
    return CaseCard(
        image_id=image_id,
        caption=info.caption,
        cuis=info.cuis,
        split=info.split,
        metadata=cases.card_metadata(image_id, current().app.card_fields),
        rank=rank,
        score=score,
        thumbnail=thumb,
        thumbnail_error=error,
        viewer_url=getattr(cases, "viewer_url", lambda _id: None)(image_id),
    )


def cards_from_hits(
    cases: CaseView, hits: Sequence[Hit], *, thumbnail_px: int | None = None
) -> list[CaseCard]:
    """Cards for search hits, in hit order, with the hit's rank and score."""
    return [
        card_for(cases, h.image_id, rank=h.rank, score=h.score, thumbnail_px=thumbnail_px)
        for h in hits
    ]
