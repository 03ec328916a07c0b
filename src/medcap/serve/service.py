"""One process's service state: background loading, the worker threads, the batchers.

The index and encoder load on the encoder's own worker thread right after start-up, so
`/healthz` answers at once and `/readyz` says 503 until they are ready (or why they
failed). Image and text queries each have a micro-batcher; both run their batches on that
one encoder thread. Captions run on a second thread (a generator can take seconds) and
find their neighbours through the image batcher, like any other query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, TypeVar

from starlette.concurrency import run_in_threadpool

from medcap.config import SearchMode
from medcap.errors import first_line
from medcap.serve.batching import MicroBatcher, QueueFullError
from medcap.serve.engine import Engine, ImageQuery, TextQuery, load_engine
from medcap.serve.metrics import ServiceMetrics
from medcap.serve.params import SearchParams
from medcap.serve.settings import ServeOptions
from medcap.types import Hit

if TYPE_CHECKING:
    from PIL import Image

    from medcap.generation.captioning import CaptionResult
    from medcap.retrieval.refine import Refinement

LOG = logging.getLogger(__name__)
Status = Literal["loading", "ready", "failed"]
Q = TypeVar("Q")


class NotReadyError(Exception):
    """The service cannot answer yet (still loading, failed to load, or overloaded): a 503."""


class Service:
    """The loaded engine (once ready), its two worker threads and its micro-batchers."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.metrics = ServiceMetrics()
        self.status: Status = "loading"
        self.problem: str | None = None  # why loading failed
        self._engine: Engine | None = None
        self._encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="medcap-encoder")
        self._generator_thread = ThreadPoolExecutor(1, thread_name_prefix="medcap-generator")
        self.images: MicroBatcher[ImageQuery, list[Hit]] = self._batcher(
            lambda queries: self.engine.search_images(queries), "image"
        )
        self.texts: MicroBatcher[TextQuery, list[Hit]] = self._batcher(
            lambda queries: self.engine.search_texts(queries), "text"
        )
        self.metrics.queued.labels("image").set_function(lambda: len(self.images))
        self.metrics.queued.labels("text").set_function(lambda: len(self.texts))
        self._loading: asyncio.Future[Engine] | None = None

    def _batcher(
        self, run: Callable[[Sequence[Q]], Sequence[list[Hit] | BaseException]], kind: str
    ) -> MicroBatcher[Q, list[Hit]]:
        cfg = self.options.cfg
        return MicroBatcher(
            run,
            self._encoder_thread,
            max_size=cfg.batch_max_size,
            max_wait_s=cfg.batch_max_wait_ms / 1000,
            max_queue=cfg.queue_max,
            on_batch=self.metrics.batch_size.labels(kind).observe,
            name=kind,
        )

    @property
    def engine(self) -> Engine:
        """The loaded engine; NotReadyError (503) while loading or after a failed load."""
        self.check_ready()
        assert self._engine is not None
        return self._engine

    def check_ready(self) -> None:
        """Raise NotReadyError (a 503) unless the index and encoder are loaded."""
        if self._engine is None:
            if self.status == "failed":
                raise NotReadyError(f"the index could not be loaded: {self.problem}")
            raise NotReadyError("the index and encoder are still loading; retry shortly")

    async def start(self) -> None:
        """Start the batchers and load the index in the background (returns at once)."""
        self.images.start()
        self.texts.start()
        loop = asyncio.get_running_loop()
        self._loading = loop.run_in_executor(self._encoder_thread, load_engine, self.options)
        self._loading.add_done_callback(self._loaded)

    def _loaded(self, future: asyncio.Future[Engine]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.status, self.problem = "failed", first_line(exc)
            LOG.error("error: the index could not be loaded: %s", self.problem, exc_info=exc)
            return
        self._engine = future.result()
        self.status = "ready"
        self.metrics.index_cases.set(len(self._engine.index))
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        """Stop the batchers and let the worker threads finish what they run."""
        await self.images.stop()
        await self.texts.stop()
        self._encoder_thread.shutdown(wait=True, cancel_futures=True)
        self._generator_thread.shutdown(wait=True, cancel_futures=True)

    # ---- queries ---------------------------------------------------------------------
    async def search_image(self, image: Image.Image, params: SearchParams) -> list[Hit]:
        """Hits for one decoded image, through the image micro-batcher."""
        self.check_ready()  # before queueing
        return await _queued(self.images.submit(ImageQuery(image, params)))

    async def search_text(self, text: str, params: SearchParams) -> list[Hit]:
        """Hits for one text, through the text micro-batcher."""
        self.check_ready()  # before queueing
        return await _queued(self.texts.submit(TextQuery(text, params)))

    async def search_refined(
        self,
        params: SearchParams,
        refine: Refinement,
        *,
        image: Image.Image | None = None,
        text: str | None = None,
        case: str | None = None,
    ) -> list[Hit]:
        """A refined query on the encoder thread, on its own (not micro-batched)."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        call = functools.partial(
            engine.search_refined, params, refine, image=image, text=text, case=case
        )
        return await loop.run_in_executor(self._encoder_thread, call)

    async def case_neighbours(self, image_id: str, params: SearchParams) -> list[Hit]:
        """Hits for an indexed case's stored vector (no encoder needed)."""
        return await run_in_threadpool(self.engine.case_neighbours, image_id, params)

    async def caption(self, image: Image.Image, k: int) -> CaptionResult:
        """Caption one image on the generator thread; neighbours come through the batcher."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        neighbours = _BatchedNeighbours(self, loop)
        return await loop.run_in_executor(
            self._generator_thread, engine.caption, image, k, neighbours
        )


async def _queued(answer: Awaitable[list[Hit]]) -> list[Hit]:
    """The answer of a queued query; a full queue is a 503."""
    try:
        return await answer
    except QueueFullError as exc:
        raise NotReadyError(f"the service is overloaded ({exc}); retry shortly") from None


class _BatchedNeighbours:
    """The `search_images` a caption needs, answered by the image batcher from another thread."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self._service = service
        self._loop = loop

    def search_images(
        self,
        images: Sequence[Image.Image],
        k: int,
        *,
        mode: SearchMode = "captions",
        exclude_ids: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]:
        excluded = list(exclude_ids) if exclude_ids is not None else [None] * len(images)
        pending = [
            asyncio.run_coroutine_threadsafe(
                self._service.images.submit(ImageQuery(image, SearchParams(k, mode), own)),
                self._loop,
            )
            for image, own in zip(images, excluded, strict=True)
        ]
        return [p.result() for p in pending]
