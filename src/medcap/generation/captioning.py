"""Captioning from neighbours: query images -> neighbours from a retriever -> prompts -> a backend.

The library half of captioning (the batch run that writes a results CSV is
`medcap.runs.caption`; LoRA training runs are `medcap.train`). The query's own image_id is
excluded from its neighbours, so an indexed image never sees its own caption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medcap.config import DEFAULTS, GenerationConfig, SearchMode, replace_set
from medcap.errors import ImageDecodeError
from medcap.generation.adapter import read_adapter_info
from medcap.generation.adaptive_k import choose_k
from medcap.generation.backends.base import CaptionBackend, backend_class, get_backend
from medcap.generation.collate import TrainExample
from medcap.generation.prompt import Prompt, build_prompt
from medcap.types import Caption, Hit, Record, Skipped

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

CaptionFn = Callable[[Sequence[Record]], Sequence[Caption | Skipped]]  # records -> one result each


class NeighbourSearch(Protocol):
    """The part of `medcap.retrieval.retriever.Retriever` that captioning uses."""

    def search_images(
        self,
        images: Sequence[Image],
        k: int,
        *,
        mode: SearchMode = "captions",
        exclude_ids: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]: ...


def resolve_settings(
    cfg: GenerationConfig, adapter: str | Path | None = None, **given: Any
) -> GenerationConfig:
    """Settings for a run: what the user gave (`given`: backend, template, k; None = not
    given) wins; the rest comes from the adapter's sidecar when there is one; a template
    still unset is the backend's own (`BaseBackend.default_template`)."""
    cfg = replace_set(cfg, **given)
    info = read_adapter_info(adapter) if adapter else None
    if info is not None:
        chosen: dict[str, Any] = {"backend": info.backend, "template": info.template, "k": info.k}
        cfg = replace(cfg, **{k: v for k, v in chosen.items() if given.get(k) is None})
    return replace(cfg, template=template_of(cfg))


def template_of(cfg: GenerationConfig) -> str:
    """The prompt template to use: `cfg.template`, else the default of `cfg.backend`."""
    return cfg.template or backend_class(cfg.backend).default_template


def generator_model(cfg: GenerationConfig, model_id: str | None = None) -> str:
    """The model `cfg.backend` loads: `model_id`, else the backend's default ("" for a
    model-free backend such as consensus)."""
    return model_id or backend_class(cfg.backend).default_model


def build_backend(
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    adapter: str | Path | None = None,
    **options: Any,
) -> CaptionBackend:
    """The backend named by `cfg.backend`, with a model id/path and LoRA adapter if it uses them
    (a model-free backend refuses both with a one-line error)."""
    return get_backend(cfg.backend, cfg=cfg, model_id=model_id, adapter=adapter, **options)


@dataclass(frozen=True)
class CaptionResult:
    """One generated caption with its evidence: the neighbours it was made from (hits, best
    first, the image's own case excluded) and the prompt the backend read."""

    caption: Caption
    neighbours: list[Hit]
    prompt: Prompt

    @property
    def text(self) -> str:
        """The caption."""
        return self.caption.text

    @property
    def backend(self) -> str:
        """The backend that wrote it."""
        return self.caption.backend

    @property
    def model(self) -> str:
        """The model id or path the backend ran ("" for model-free backends)."""
        return self.caption.model

    @property
    def seconds(self) -> float:
        """Retrieval + generation time of its batch, divided evenly over the batch's images."""
        return self.caption.latency_s


def _neighbours(
    retriever: NeighbourSearch,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig,
    modality_hints: Sequence[str | None] | None,
) -> list[tuple[list[Hit], Prompt]]:
    """The top-`cfg.k` neighbours of each image (its own id excluded) and their prompt; with
    `cfg.auto_k`, as many of the top `cfg.auto_k_max` as `adaptive_k.choose_k` keeps."""
    want = cfg.auto_k_max if cfg.auto_k else cfg.k
    hits = retriever.search_images(images, want, mode=cfg.search_mode, exclude_ids=list(image_ids))
    hints = modality_hints or [cfg.modality_hint] * len(images)
    template = template_of(cfg)
    out = []
    for own_id, found, hint in zip(image_ids, hits, hints, strict=True):
        found = [h for h in found if own_id is None or h.image_id != own_id]  # belt and braces
        top = sorted(found, key=lambda h: h.rank)[:want]
        k = choose_k([h.score for h in top], cfg) if cfg.auto_k else cfg.k
        top = top[:k]
        out.append((top, build_prompt(top, template=template, k=max(k, 1), modality_hint=hint)))
    return out


def neighbours_and_prompts(
    retriever: NeighbourSearch,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig,
    *,
    modality_hints: Sequence[str | None] | None = None,
) -> list[Prompt]:
    """Search the top-`cfg.k` neighbours of each image (its own id excluded) and build prompts."""
    return [p for _, p in _neighbours(retriever, images, image_ids, cfg, modality_hints)]


def caption_with_evidence(
    retriever: NeighbourSearch,
    backend: CaptionBackend,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    modality_hints: Sequence[str | None] | None = None,
) -> list[CaptionResult]:
    """Caption decoded images; each result keeps its neighbours and prompt (see caption_images)."""
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    if not images:
        return []
    start = time.perf_counter()
    found = _neighbours(retriever, images, image_ids, cfg, modality_hints)
    texts = backend.generate(images, [prompt for _, prompt in found])
    per_image_s = (time.perf_counter() - start) / len(images)
    return [
        CaptionResult(
            Caption(
                text=text,
                backend=backend.name,
                model=backend.model,
                latency_s=per_image_s,
                neighbour_ids=prompt.neighbour_ids,
                neighbour_scores=prompt.neighbour_scores,
            ),
            hits,
            prompt,
        )
        for text, (hits, prompt) in zip(texts, found, strict=True)
    ]


def caption_images_with_neighbours(
    retriever: NeighbourSearch,
    backend: CaptionBackend,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    modality_hints: Sequence[str | None] | None = None,
) -> list[tuple[Caption, Prompt]]:
    """Like `caption_images`, also returning each prompt (neighbour ids, captions and scores)."""
    results = caption_with_evidence(
        retriever, backend, images, image_ids, cfg, modality_hints=modality_hints
    )
    return [(r.caption, r.prompt) for r in results]


def caption_images(
    retriever: NeighbourSearch,
    backend: CaptionBackend,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    modality_hints: Sequence[str | None] | None = None,
) -> list[Caption]:
    """Caption decoded images; `image_ids[i]` (None: an outside image) is not its own neighbour.

    `latency_s` of each caption is the batch's retrieval + generation time divided evenly.

    Example:
        >>> retriever = open_retriever("runs/index")
        >>> [c.text for c in caption_images(retriever, get_backend("consensus"), [img], [None])]
        ['Axial CT of the chest showing a 2 cm nodule in the right upper lobe.']
    """
    pairs = caption_images_with_neighbours(
        retriever, backend, images, image_ids, cfg, modality_hints=modality_hints
    )
    return [caption for caption, _ in pairs]


def make_caption_fn(
    retriever: NeighbourSearch, backend: CaptionBackend, cfg: GenerationConfig
) -> CaptionFn:
    """A runner callable: decode each record's image (unreadable: Skipped), then caption."""
    from medcap.data.images import load_image

    def caption_records(records: Sequence[Record]) -> list[Caption | Skipped]:
        results: list[Caption | Skipped | None] = [None] * len(records)
        images, ids, slots = [], [], []
        for i, record in enumerate(records):
            try:
                images.append(load_image(record.image))
            except ImageDecodeError as exc:
                results[i] = Skipped(record.image.describe(), None, record.image_id, str(exc))
                continue
            ids.append(record.image_id)
            slots.append(i)
        for slot, caption in zip(
            slots, caption_images(retriever, backend, images, ids, cfg), strict=True
        ):
            results[slot] = caption
        return [r for r in results if r is not None]

    return caption_records


class RecordSearch(Protocol):
    """The part of the Retriever that training-prompt building uses."""

    def search_records(
        self,
        records: Sequence[Record],
        k: int,
        *,
        mode: SearchMode = "captions",
        exclude_self: bool = True,
    ) -> list[list[Hit]]: ...


def build_training_examples(
    records: Sequence[Record], retriever: RecordSearch, cfg: GenerationConfig = DEFAULTS.generation
) -> list[TrainExample]:
    """One LoRA example per record: its top-`cfg.k` neighbours (itself excluded) in a prompt, its
    caption as the target. Images stay lazy references until a training step needs them."""
    found = retriever.search_records(records, cfg.k, mode=cfg.search_mode, exclude_self=True)
    template = template_of(cfg)
    examples = []
    for record, hits in zip(records, found, strict=True):
        hits = [h for h in hits if h.image_id != record.image_id]
        prompt = build_prompt(hits, template=template, k=cfg.k, modality_hint=cfg.modality_hint)
        examples.append(
            TrainExample(
                image=record.image, prompt=prompt, target=record.caption, image_id=record.image_id
            )
        )
    return examples
