"""Who captions the batches of a run: this process (`LocalCaptionEngine`) or a cluster.

`caption_split` opens an engine for a run and feeds its `Captioner` the batches still to
caption; the captioner yields each batch with its results, in order, and the runner writes
the rows. `medcap.dist.RayCaptionEngine` captions on an actor pool of backends; everything
around the batches (the CSV, resume, the run identity, the lock) stays the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medcap.config import GenerationConfig, current
from medcap.generation.backends.base import CaptionBackend
from medcap.generation.captioning import CaptionFn, NeighbourSearch, build_backend, make_caption_fn
from medcap.types import Caption, Record, Skipped

BatchResults = Sequence[Caption | Skipped]  # one result per record of a batch
# batches -> (batch, its results), in the batches' order
BatchMapper = Callable[[Iterable[list[Record]]], Iterator[tuple[list[Record], BatchResults]]]


@dataclass(frozen=True)
class BatchRun:
    """Where a split captioning run read from and wrote to."""

    data: str
    split: str
    index_dir: str
    out: str


class Captioner(Protocol):
    """Captions batches for one run; `map` yields (batch, results) in the batches' order."""

    @property
    def engine(self) -> str: ...  # "local", "ray"

    @property
    def backend(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def defers_images(self) -> bool: ...  # reads images itself (medcap.data.fetch_images)

    def map(
        self, batches: Iterable[list[Record]]
    ) -> Iterator[tuple[list[Record], BatchResults]]: ...


class CaptionEngine(Protocol):
    """Opens a Captioner for a run's settings and closes it (its models, its cluster)."""

    def open(
        self,
        run: BatchRun,
        cfg: GenerationConfig,
        *,
        model_id: str | None,
        adapter: str | Path | None,
        verify: bool | None,
    ) -> contextlib.AbstractContextManager[Captioner]: ...


@dataclass
class LocalCaptioner:
    """Captions batch after batch in this process."""

    caption_fn: CaptionFn
    backend: str
    model: str
    engine: str = "local"
    defers_images: bool = False

    def map(self, batches: Iterable[list[Record]]) -> Iterator[tuple[list[Record], BatchResults]]:
        for batch in batches:
            yield batch, self.caption_fn(batch)


@dataclass
class LocalCaptionEngine:
    """The retriever and backend of this process (given, or opened from the run's index)."""

    retriever: NeighbourSearch | None = None
    caption_backend: CaptionBackend | None = None

    @contextlib.contextmanager
    def open(
        self,
        run: BatchRun,
        cfg: GenerationConfig,
        *,
        model_id: str | None,
        adapter: str | Path | None,
        verify: bool | None,
    ) -> Iterator[Captioner]:
        searcher = self.retriever
        if searcher is None:
            from medcap.retrieval.retriever import open_retriever

            searcher = open_retriever(
                run.index_dir,
                device=cfg.device,
                index_device=current().index.search_device,
                verify=verify,
            )
        backend = self.caption_backend or build_backend(cfg, model_id=model_id, adapter=adapter)
        yield LocalCaptioner(make_caption_fn(searcher, backend, cfg), backend.name, backend.model)
