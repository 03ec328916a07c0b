"""Dynamic micro-batching: queries that arrive together are encoded together.

Each request puts its query on a batcher's queue and awaits its own answer. A collector
task takes up to `max_size` queued queries as soon as the oldest has waited `max_wait_s`
(or at once when the queue holds `max_size`) and runs them as one call of `run_batch` on
the encoder's single worker thread, so the event loop never blocks and the model is only
ever used from one thread. While that thread is busy, new queries queue up and form the
next batch: under load batches grow by themselves, and a lone query waits at most
`max_wait_s`. A query whose request gave up (timeout, client gone) is dropped unrun.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)

Q = TypeVar("Q")
R = TypeVar("R")


class QueueFullError(Exception):
    """More queries are waiting than the batcher accepts (the service is overloaded)."""


@dataclass
class _Waiting(Generic[Q, R]):
    query: Q
    future: asyncio.Future[R]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[Q, R]):
    """Group concurrent queries into batches run on `executor` (one worker thread).

    `run_batch` answers each query of a batch, in order: a result, or the exception that
    query alone raised (an exception raised by `run_batch` itself fails the whole batch).

    >>> batcher = MicroBatcher(encode_and_search, executor, max_size=32, max_wait_s=0.002)
    >>> batcher.start(); hits = await batcher.submit(query)
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Q]], Sequence[R | BaseException]],
        executor: Executor,
        *,
        max_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batch",
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self.name = name
        self._queue: deque[_Waiting[Q, R]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._collect(), name=f"medcap-{self.name}-batcher"
            )

    async def stop(self) -> None:
        """Stop collecting; queries still queued fail with CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            self._queue.popleft().future.cancel()

    async def submit(self, query: Q) -> R:
        """Queue one query and wait for its answer (its exception is raised here)."""
        if len(self._queue) >= self.max_queue:
            raise QueueFullError(f"{len(self._queue)} {self.name} queries are already waiting")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(query, future))
        self._arrived.set()
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                answers = await loop.run_in_executor(
                    self._executor, self._run_batch, [w.query for w in batch]
                )
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: each query hears why
                answers = [exc] * len(batch)
            for waiting, answer in zip(batch, answers, strict=True):
                if waiting.future.done():  # its request timed out meanwhile
                    continue
                if isinstance(answer, BaseException):
                    waiting.future.set_exception(answer)
                else:
                    waiting.future.set_result(answer)

    async def _wait_for_batch(self) -> None:
        """Return when a batch is due: `max_size` queued, or the oldest waited `max_wait_s`."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].queued_at + self.max_wait_s
        while len(self._queue) < self.max_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Waiting[Q, R]]:
        """Up to `max_size` queued queries whose requests still wait for them."""
        batch: list[_Waiting[Q, R]] = []
        while self._queue and len(batch) < self.max_size:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                batch.append(waiting)
        return batch
