"""Glue for captioning: query images -> neighbours from a retriever -> prompts -> a backend.

Used by `medcap caption`, `medcap demo`, the app and the generator training command. The
query's own image_id is excluded from its neighbours, so an indexed image never sees its
own caption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medcap.atomic import write_json_atomic
from medcap.config import DEFAULTS, GenerationConfig, SearchMode
from medcap.errors import ImageDecodeError, InputError
from medcap.generation.adapter import read_adapter_info
from medcap.generation.backends.base import CaptionBackend, get_backend
from medcap.generation.collate import GeneratorKind, TrainExample
from medcap.generation.lora_train import LoraResult, train_lora
from medcap.generation.prompt import Prompt, build_prompt
from medcap.generation.runner import CaptionFn, RunSummary, caption_dataset
from medcap.types import Caption, Hit, Record, Skipped

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)


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
    """Fill what the user did not give (None in `given`: backend, template, k): from the
    adapter's sidecar when there is one, and blip2-lora's own template (OPT continues text)."""
    info = read_adapter_info(adapter) if adapter else None
    if info is not None:
        chosen: dict[str, Any] = {"backend": info.backend, "template": info.template, "k": info.k}
        cfg = replace(cfg, **{k: v for k, v in chosen.items() if given.get(k) is None})
    elif cfg.backend == "blip2-lora" and given.get("template") is None:
        cfg = replace(cfg, template=cfg.blip2_template)
    return cfg


def build_backend(
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    adapter: str | Path | None = None,
    **options: Any,
) -> CaptionBackend:
    """The backend named by `cfg.backend`, with a model id/path and LoRA adapter if it uses them."""
    if cfg.backend == "consensus":
        if model_id or adapter:
            raise InputError(
                "the consensus backend uses no model; drop --model/--adapter "
                "or pick --backend qwen2-vl"
            )
        return get_backend("consensus", cfg=cfg, **options)
    return get_backend(cfg.backend, cfg=cfg, model_id=model_id, adapter=adapter, **options)


def neighbours_and_prompts(
    retriever: NeighbourSearch,
    images: Sequence[Image],
    image_ids: Sequence[str | None],
    cfg: GenerationConfig,
    *,
    modality_hints: Sequence[str | None] | None = None,
) -> list[Prompt]:
    """Search the top-`cfg.k` neighbours of each image (its own id excluded) and build prompts."""
    hits = retriever.search_images(images, cfg.k, mode=cfg.search_mode, exclude_ids=list(image_ids))
    hints = modality_hints or [cfg.modality_hint] * len(images)
    prompts = []
    for own_id, found, hint in zip(image_ids, hits, hints, strict=True):
        found = [h for h in found if own_id is None or h.image_id != own_id]  # belt and braces
        prompts.append(build_prompt(found, template=cfg.template, k=cfg.k, modality_hint=hint))
    return prompts


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
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    if not images:
        return []
    start = time.perf_counter()
    prompts = neighbours_and_prompts(
        retriever, images, image_ids, cfg, modality_hints=modality_hints
    )
    texts = backend.generate(images, prompts)
    per_image_s = (time.perf_counter() - start) / len(images)
    captions = [
        Caption(
            text=text,
            backend=backend.name,
            model=backend.model,
            latency_s=per_image_s,
            neighbour_ids=prompt.neighbour_ids,
            neighbour_scores=prompt.neighbour_scores,
        )
        for text, prompt in zip(texts, prompts, strict=True)
    ]
    return list(zip(captions, prompts, strict=True))


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


@dataclass(frozen=True)
class BatchRun:
    """Where a split captioning run read from and wrote to."""

    data: str
    split: str
    index_dir: str
    out: str


def caption_split(
    run: BatchRun,
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    adapter: str | Path | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    retriever: NeighbourSearch | None = None,
    backend: CaptionBackend | None = None,
) -> RunSummary:
    """Caption one split of a dataset into a results CSV (resumable) plus `<out>.run.json`."""
    from medcap.data.readers import open_dataset

    dataset = open_dataset(run.data)
    if run.split not in dataset.splits():
        raise InputError(
            f"{run.data} has no split {run.split!r}; it has {', '.join(dataset.splits())}"
        )
    if retriever is None:
        from medcap.retrieval.retriever import open_retriever

        searcher: NeighbourSearch = open_retriever(run.index_dir, device=cfg.device)
    else:
        searcher = retriever
    backend = backend or build_backend(cfg, model_id=model_id, adapter=adapter)
    summary = caption_dataset(
        dataset.records(run.split),
        make_caption_fn(searcher, backend, cfg),
        run.out,
        split=run.split,
        cfg=cfg,
        limit=limit,
        total=dataset.count(run.split),
        overwrite=overwrite,
        progress=progress,
    )
    summary.skipped.extend(dataset.skipped)
    _write_run_info(run, cfg, backend, summary)
    return summary


def _write_run_info(
    run: BatchRun, cfg: GenerationConfig, backend: CaptionBackend, summary: RunSummary
) -> Path:
    path = Path(run.out).with_suffix(".run.json")
    info = {
        "run": asdict(run),
        "backend": backend.name,
        "model": backend.model,
        "generation": asdict(cfg),
        "written": summary.written,
        "resumed": summary.resumed,
        "elapsed_s": round(summary.elapsed_s, 3),
        "images_per_s": round(summary.images_per_s, 3),
        "skipped": [asdict(s) for s in summary.skipped],
    }
    write_json_atomic(path, info)
    return path


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
    examples = []
    for record, hits in zip(records, found, strict=True):
        hits = [h for h in hits if h.image_id != record.image_id]
        prompt = build_prompt(hits, template=cfg.template, k=cfg.k, modality_hint=cfg.modality_hint)
        examples.append(
            TrainExample(
                image=record.image, prompt=prompt, target=record.caption, image_id=record.image_id
            )
        )
    return examples


def load_generator(
    kind: str, cfg: GenerationConfig, model_id: str | None = None
) -> tuple[Any, Any, str]:
    """(model, processor, model id) of the base model a generator backend fine-tunes."""
    from medcap.devices import resolve_device
    from medcap.generation.backends import hf

    hf.require_transformers()
    device = resolve_device(cfg.device)
    dtype = hf.resolve_dtype(cfg.dtype, device)
    if kind == "qwen2-vl":
        from medcap.generation.backends.qwen2vl import load_qwen2vl

        model_id = model_id or cfg.qwen2vl_model
        model, processor = load_qwen2vl(model_id, cfg, device, dtype)
    elif kind == "blip2-lora":
        from medcap.generation.backends.blip2_lora import load_blip2

        model_id = model_id or cfg.blip2_model
        model, processor = load_blip2(model_id, cfg, device, dtype)
    else:
        raise InputError(f"cannot fine-tune backend {kind!r}; use --backend blip2-lora or qwen2-vl")
    return model, processor, model_id


def train_generator(
    data: str,
    index_dir: str,
    out_dir: str | Path,
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    resume: bool = False,
    limit: int | None = None,
    progress: bool = True,
    retriever: RecordSearch | None = None,
) -> LoraResult:
    """LoRA-tune generator `cfg.backend` on `cfg.train_split` of `data`; neighbours: `index_dir`."""
    from medcap.data.readers import open_dataset

    if cfg.backend not in ("qwen2-vl", "blip2-lora"):
        raise InputError(
            f"cannot fine-tune backend {cfg.backend!r}; use --backend blip2-lora or qwen2-vl"
        )
    dataset = open_dataset(data)
    if cfg.train_split not in dataset.splits():
        raise InputError(
            f"{data} has no split {cfg.train_split!r}; it has {', '.join(dataset.splits())}"
        )
    records = list(islice(dataset.records(cfg.train_split), limit))
    if retriever is None:
        from medcap.retrieval.retriever import open_retriever

        searcher: RecordSearch = open_retriever(index_dir, device=cfg.device)
    else:
        searcher = retriever
    examples = build_training_examples(records, searcher, cfg)
    model, processor, model_id = load_generator(cfg.backend, cfg, model_id)
    kind: GeneratorKind = "qwen2-vl" if cfg.backend == "qwen2-vl" else "blip2-lora"
    return train_lora(
        model,
        processor,
        examples,
        out_dir,
        kind=kind,
        cfg=cfg,
        base_model=model_id,
        resume=resume,
        progress=progress,
    )
