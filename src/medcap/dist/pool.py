"""An ordered map over an actor pool: bounded work in flight, results in submission order.

Actors are created with `max_restarts` and `max_task_retries`, so Ray replaces an actor
that died with its node and runs its queued calls again; read tasks are retried by Ray as
well. What still surfaces here (the object of a dead node lost, an actor that cannot be
replaced) is resubmitted up to `retries` times. An error the task itself raised is not
retried: a MedcapError comes back as its own one-line message.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from medcap.errors import MedcapError, first_line

LOG = logging.getLogger(__name__)
T = TypeVar("T")

Submit = Callable[[Any, T], Any]  # (actor, item) -> ObjectRef of the result, or the result itself


class ClusterStalledError(MedcapError):
    """Nothing finished on the cluster for `DistConfig.stall_timeout_s`."""


def unwrap(exc: RayTaskError) -> BaseException:
    """The exception a remote task raised (a MedcapError keeps its one-line message)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def wait_ready(answers: Sequence[Any], timeout_s: float) -> list[Any]:
    """The actors' `ready()` answers (ObjectRefs), once all have loaded their model; a load
    error comes back as its own message, a pool the cluster cannot place as one line."""
    try:
        return list(ray.get(list(answers), timeout=timeout_s))
    except GetTimeoutError:
        raise ClusterStalledError(
            f"the Ray actors did not start within {timeout_s:g} s (dist.stall_timeout_s): "
            "check `ray status` for free CPUs/GPUs and the Ray logs for errors"
        ) from None
    except RayTaskError as exc:
        raise unwrap(exc) from None


class OrderedPool(Generic[T]):
    """Round-robin submission to `actors`, at most `window` items in flight."""

    def __init__(
        self, actors: Sequence[Any], *, window: int, stall_timeout_s: float, retries: int
    ) -> None:
        self.actors = list(actors)
        self.window = max(window, 1)
        self.stall_timeout_s = stall_timeout_s
        self.retries = retries
        self._turn = 0

    def _submit(self, submit: Submit[T], item: T) -> Any:
        actor = self.actors[self._turn % len(self.actors)]
        self._turn += 1
        return submit(actor, item)

    def _get(self, submit: Submit[T], item: T, ref: Any) -> Any:
        for attempt in range(self.retries + 1):
            if not isinstance(ref, ray.ObjectRef):
                return ref  # done without the cluster (nothing to compute)
            try:
                return ray.get(ref, timeout=self.stall_timeout_s)
            except GetTimeoutError:
                raise ClusterStalledError(
                    f"no result from the Ray cluster for {self.stall_timeout_s:g} s "
                    "(dist.stall_timeout_s): check `ray status` for lost nodes or resources; "
                    "finished work is kept, rerun to continue"
                ) from None
            except RayTaskError as exc:
                raise unwrap(exc) from None
            except RayError as exc:
                if attempt == self.retries:
                    raise MedcapError(
                        f"a task failed on the Ray cluster {attempt + 1} times: "
                        f"{first_line(exc, 300)}; finished work is kept, rerun to continue"
                    ) from None
                LOG.warning("ray: retrying a task after %s", first_line(exc, 200))
                ref = self._submit(submit, item)
        raise AssertionError("unreachable")

    def map(self, items: Iterable[T], submit: Submit[T]) -> Iterator[tuple[T, Any]]:
        """(item, result) for each item, in order; submission runs `window` items ahead."""
        queue: deque[tuple[T, Any]] = deque()
        source = iter(items)

        def fill() -> None:
            while len(queue) < self.window:
                item = next(source, _END)
                if item is _END:
                    return
                queue.append((item, self._submit(submit, item)))

        fill()
        while queue:
            item, ref = queue.popleft()
            result = self._get(submit, item, ref)
            fill()  # keep the cluster busy while the caller handles this result
            yield item, result


_END: Any = object()
