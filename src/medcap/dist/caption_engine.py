"""`caption --engine ray`: a batch captioning run on an actor pool of backends.

Each `CaptionActor` opens the run's index (retriever and query encoder) and builds the
backend once (a GPU each where the cluster has GPUs), then captions whole batches: it
reads and decodes their images itself (`fetch_images`, then the same caption function as
a one-process run). The driver keeps `DistConfig`-sized work in flight and receives the
results in order, so `medcap.runs.caption` writes the same rows, resumes the same way and
keeps the same run identity as without Ray.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch

from medcap.config import DistConfig, GenerationConfig
from medcap.data import fetch_images
from medcap.dist.cluster import pool_shape, ray_session
from medcap.dist.pool import OrderedPool, wait_ready
from medcap.errors import MedcapError
from medcap.generation.captioning import CaptionFn, build_backend, make_caption_fn
from medcap.runs.caption_engine import BatchResults, BatchRun, Captioner
from medcap.types import Record


class CaptionActor:
    """A retriever and a backend, loaded once; captions batches of records. A load error
    is kept and raised by each call, so the driver gets it as a MedcapError."""

    def __init__(
        self,
        index_dir: str,
        cfg: GenerationConfig,
        model_id: str | None,
        adapter: str | None,
        verify: bool | None,
        index_device: str,
        threads: int,
    ) -> None:
        from medcap.retrieval.retriever import open_retriever

        torch.set_num_threads(threads)
        self.error: MedcapError | None = None
        try:
            searcher = open_retriever(
                index_dir, device=cfg.device, index_device=index_device, verify=verify
            )
            self.backend = build_backend(cfg, model_id=model_id, adapter=adapter)
            self.caption_fn: CaptionFn = make_caption_fn(searcher, self.backend, cfg)
        except MedcapError as exc:
            self.error = exc

    def ready(self) -> tuple[str, str]:
        """(backend name, model) of this actor (raises its load error)."""
        if self.error is not None:
            raise self.error
        return self.backend.name, self.backend.model

    def caption(self, records: list[Record]) -> BatchResults:
        """One Caption or Skipped per record, in order."""
        if self.error is not None:
            raise self.error
        return list(self.caption_fn(fetch_images(records)))


@dataclass
class RayCaptioner:
    """A Captioner on a pool of CaptionActors. `ready` holds their `ready()` answers, read
    after the first results (the actors load while the first batches are sent) or when
    `backend`/`model` are first asked for, which must happen while the session is open."""

    pool: OrderedPool[list[Record]]
    ready: list[Any]
    timeout_s: float
    engine: str = "ray"
    defers_images: bool = True

    @functools.cached_property
    def _described(self) -> tuple[str, str]:
        backend, model = wait_ready(self.ready, self.timeout_s)[0]
        return str(backend), str(model)

    @property
    def backend(self) -> str:
        return self._described[0]

    @property
    def model(self) -> str:
        return self._described[1]

    def map(self, batches: Iterable[list[Record]]) -> Iterator[tuple[list[Record], BatchResults]]:
        def submit(actor: Any, batch: list[Record]) -> Any:
            return actor.caption.remote(batch)

        for batch, results in self.pool.map(batches, submit):
            self._described  # noqa: B018 - read now, while the session is open
            yield batch, results


@dataclass
class RayCaptionEngine:
    """A CaptionEngine on a Ray cluster (`cfg.address`, else a local Ray for the run)."""

    cfg: DistConfig
    index_device: str = "auto"  # IndexConfig.search_device of the actors' retrievers

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
        with ray_session(self.cfg) as session:
            shape = pool_shape(session, self.cfg)
            actor = ray.remote(CaptionActor).options(
                num_cpus=shape.cpus, num_gpus=shape.gpus, max_restarts=self.cfg.max_restarts,
                max_task_retries=-1 if self.cfg.max_restarts else 0, scheduling_strategy="SPREAD",
            )  # fmt: skip
            index_dir = str(Path(run.index_dir).resolve())
            adapter_dir = str(Path(adapter).resolve()) if adapter else None
            actors: list[Any] = [
                actor.remote(
                    index_dir, cfg, model_id, adapter_dir, verify, self.index_device, shape.threads
                )  # fmt: skip
                for _ in range(shape.actors)
            ]
            ready = [a.ready.remote() for a in actors]
            window = shape.actors * self.cfg.inflight_per_actor
            pool: OrderedPool[list[Record]] = OrderedPool(
                actors, window=window, stall_timeout_s=self.cfg.stall_timeout_s,
                retries=self.cfg.task_retries,
            )  # fmt: skip
            yield RayCaptioner(pool, ready, self.cfg.stall_timeout_s)
