"""Combining the same step of concurrent requests into one call (group commit).

The threads of a web process that reach the step at the same moment share
one call: the first becomes the leader and runs the step for everything
queued; the threads arriving meanwhile queue, and when the leader is done
the first of them leads the next call for all that queued behind it. Alone,
a request runs its step at once, without waiting for anybody; under load a
call serves as many requests as have queued, so the round trips and commits
per request fall as the load grows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Job(Generic[Item, Result]):
    __slots__ = ("error", "finished", "item", "leads", "result", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.leads = False
        self.wake = threading.Event()


class Combiner(Generic[Item, Result]):
    """`submit` from many threads; `run` gets the items of a batch, returns one result each
    (an exception as a result is raised in the thread that submitted that item)."""

    def __init__(self, run: Callable[[Sequence[Item]], Sequence[Result | BaseException]]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._queue: list[_Job[Item, Result]] = []
        self._busy = False

    def submit(self, item: Item) -> Result:
        job: _Job[Item, Result] = _Job(item)
        with self._lock:
            self._queue.append(job)
            job.leads = not self._busy
            self._busy = True
        if not job.leads:
            job.wake.wait()  # finished by a leader, or handed the lead
        if not job.finished:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            results = self._run([job.item for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except BaseException as exc:  # every request of the batch answers for it
            results = [exc] * len(batch)
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                job.error = result
            else:
                job.result = result
            job.finished = True
        with self._lock:
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].wake.set()
            else:
                self._busy = False
        for job in batch:
            job.wake.set()
