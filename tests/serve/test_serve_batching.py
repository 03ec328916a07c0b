"""Micro-batching: concurrent queries share encoder batches, and answers stay exact."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from medcap.serve.batching import MicroBatcher, QueueFullError
from tests.serve.conftest import BATCH_MAX
from tests.serve.served import Reply, Server
from tests.serve.test_serve_search import assert_same_hits


def _batch_counts(metrics: str, kind: str) -> tuple[float, float]:
    """(number of batches, queries in them) of one kind from /metrics."""
    count = re.search(rf'medcap_batch_size_count{{kind="{kind}"}} (\S+)', metrics)
    total = re.search(rf'medcap_batch_size_sum{{kind="{kind}"}} (\S+)', metrics)
    assert count and total, metrics
    return float(count.group(1)), float(total.group(1))


def _concurrently(calls: Sequence[Any]) -> list[Reply]:
    """Run the calls at the same moment, one thread each; replies in call order."""
    start = threading.Barrier(len(calls))
    replies: list[Reply | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        replies[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in replies)
    return replies  # type: ignore[return-value]


def test_concurrent_image_queries_share_batches(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    before = _batch_counts(server.metrics(), "image")
    paths = query_images[: 2 * BATCH_MAX]
    replies = _concurrently(
        [lambda p=p: server.search_image(p.read_bytes(), "?k=5") for p in paths]
    )
    batches, queries = _batch_counts(server.metrics(), "image")
    batches, queries = batches - before[0], queries - before[1]
    assert queries == len(paths) and batches < len(paths)  # some batch held more than one
    for path, reply in zip(paths, replies, strict=True):
        assert reply.status == 200
        assert_same_hits(reply.json(), library_index.search(str(path), k=5)[0])


def test_concurrent_text_queries_with_different_settings(
    server: Server, library_index: Any
) -> None:
    payloads = [
        {"text": "CT of the chest", "k": 3},
        {"text": "MRI of the head", "k": 6, "mode": "captions"},
        {"text": "ultrasound", "where": {"modality": "ultrasound"}},
        {"text": "a fracture", "k": 2, "mode": "images"},
    ]
    before = _batch_counts(server.metrics(), "text")
    replies = _concurrently([lambda p=p: server.post_json("/v1/search", p) for p in payloads])
    batches, queries = _batch_counts(server.metrics(), "text")
    batches, queries = batches - before[0], queries - before[1]
    assert queries == len(payloads) and batches < len(payloads)
    for payload, reply in zip(payloads, replies, strict=True):
        options = {k: v for k, v in payload.items() if k != "text"}
        assert_same_hits(reply.json(), library_index.search(text=payload["text"], **options)[0])


# ---- the batcher on its own (a real event loop and worker thread) ---------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _doubler(seen: list[list[int]]) -> Any:
    def run(batch: Sequence[int]) -> list[int | BaseException]:
        seen.append(list(batch))
        return [ValueError(f"no {q}") if q < 0 else 2 * q for q in batch]

    return run


def test_batcher_groups_waiting_queries_up_to_max_size() -> None:
    seen: list[list[int]] = []

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(_doubler(seen), pool, max_size=4, max_wait_s=5.0, max_queue=99)
            batcher.start()
            try:
                return await asyncio.gather(*(batcher.submit(q) for q in range(10)))
            finally:
                await batcher.stop()

    start = time.perf_counter()
    assert _run(main()) == [2 * q for q in range(10)]
    assert [len(b) for b in seen[:2]] == [4, 4]  # full batches go at once, without waiting
    assert sorted(q for b in seen for q in b) == list(range(10))
    assert time.perf_counter() - start < 30


def test_batcher_waits_at_most_max_wait_for_a_lone_query() -> None:
    seen: list[list[int]] = []

    async def main() -> float:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(_doubler(seen), pool, max_size=8, max_wait_s=0.2, max_queue=9)
            batcher.start()
            try:
                start = time.perf_counter()
                assert await batcher.submit(21) == 42
                return time.perf_counter() - start
            finally:
                await batcher.stop()

    assert _run(main()) >= 0.2 and seen == [[21]]


def test_batcher_fails_only_the_query_that_failed_and_drops_abandoned_ones() -> None:
    seen: list[list[int]] = []

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(_doubler(seen), pool, max_size=8, max_wait_s=0.3, max_queue=3)
            batcher.start()
            try:
                abandoned = asyncio.ensure_future(batcher.submit(7))
                await asyncio.sleep(0)
                abandoned.cancel()
                results = await asyncio.gather(
                    batcher.submit(1), batcher.submit(-1), return_exceptions=True
                )
                assert results[0] == 2 and isinstance(results[1], ValueError)
                assert "no -1" in str(results[1])
                # a full queue refuses at once
                waiting = [asyncio.ensure_future(batcher.submit(q)) for q in (3, 4, 5)]
                await asyncio.sleep(0)
                with pytest.raises(QueueFullError):
                    await batcher.submit(6)
                assert await asyncio.gather(*waiting) == [6, 8, 10]
            finally:
                await batcher.stop()

    _run(main())
    assert 7 not in [q for batch in seen for q in batch]
