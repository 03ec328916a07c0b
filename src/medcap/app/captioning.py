"""What the caption page does: neighbours -> prompt -> backend, with the evidence kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medcap.app.cards import CaseCard, card_for
from medcap.config import GenerationConfig

if TYPE_CHECKING:
    from PIL import Image

    from medcap.app.session import AppIndex
    from medcap.generation.backends.base import CaptionBackend
    from medcap.generation.prompt import Prompt
    from medcap.types import Caption


@dataclass(frozen=True)
class CaptionResult:
    """A generated caption with the neighbours and the prompt it was made from."""

    caption: Caption
    prompt: Prompt
    neighbours: list[CaseCard]
    reference: str | None = None  # the case's own caption when it is an indexed case


def caption_query(
    app: AppIndex,
    backend: CaptionBackend,
    image: Image.Image,
    *,
    image_id: str | None,
    cfg: GenerationConfig,
    thumbnail_px: int | None = None,
) -> CaptionResult:
    """Caption one image; an indexed `image_id` is excluded from its own neighbours."""
    from medcap.generation.captioning import caption_images_with_neighbours

    [(caption, prompt)] = caption_images_with_neighbours(
        app.retriever, backend, [image], [image_id], cfg
    )
    neighbours = [
        card_for(app.cases, nid, rank=rank, score=score, thumbnail_px=thumbnail_px)
        for rank, (nid, score) in enumerate(
            zip(prompt.neighbour_ids, prompt.neighbour_scores, strict=True), start=1
        )
    ]
    reference = (
        app.cases.info(image_id).caption if image_id is not None and image_id in app.cases else None
    )
    return CaptionResult(caption, prompt, neighbours, reference)
