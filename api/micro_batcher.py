"""Micro-batching: concurrent requests share one model call, and each gets its own answer.

One worker thread runs the model. ``submit(key, texts)`` queues a job and returns a
``concurrent.futures.Future`` of that job's results (one per text, in order). The worker takes the
oldest job and every queued job behind it with the same ``key`` (the model object), up to
``max_batch`` texts, and runs them as one call:

* a job that finds nothing else queued runs at once: a lone request never waits;
* when several jobs are queued (requests are arriving concurrently), the worker waits for more
  until ``max_wait_s`` after the oldest one arrived or the batch is full; under sustained load the
  jobs that queue up while the model runs form the next batch without any wait;
* a job is never split; one bigger than ``max_batch`` runs alone;
* a job cancelled while queued (its caller gave up) is skipped;
* when a batch of several jobs fails, each job is run again alone, so one bad input cannot fail
  the others; a job that still fails gets the exception. The worker itself never dies of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")
log = logging.getLogger("triage.batcher")


class BatcherClosed(RuntimeError):
    """The batcher no longer takes jobs (the service is shutting down)."""


@dataclass(eq=False)
class _Job(Generic[R]):
    key: Any
    texts: list[str]
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[R]):
    def __init__(self, run: Callable[[Any, list[str]], Sequence[R]], *, max_batch: int, max_wait_s: float,
                 on_batch: Callable[[int, int], None] | None = None,
                 on_done: Callable[[int, float], None] | None = None, name: str = "triage-model") -> None:
        """``run(key, texts)`` returns one result per text; ``on_batch(texts, jobs)`` is told each batch's size
        before it runs, ``on_done(texts, seconds)`` how long a batch that succeeded took."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_fn = run
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self._on_batch = on_batch
        self._on_done = on_done
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Any, texts: Sequence[str]) -> Future:
        """Queue ``texts`` for the model ``key``; the future's result is the list of their results."""
        job = _Job(key, list(texts))
        with self._cond:
            if self._closed:
                raise BatcherClosed("the model batcher is closed")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    @property
    def queued(self) -> int:
        """Jobs waiting for the model (not counting the batch running now)."""
        with self._cond:
            return len(self._queue)

    def close(self, timeout: float | None = 0.0) -> None:
        """Take no more jobs, cancel the queued ones; wait up to ``timeout`` s for the running batch."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            job.future.cancel()
        if timeout:
            self._thread.join(timeout)

    # -- worker ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting, never die
                log.exception("batcher_error")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return None  # closed and drained
                first = self._queue.popleft()
                if not first.future.cancelled():
                    break
            batch, size = [first], len(first.texts)
            deadline = first.enqueued + self.max_wait_s
            while size < self.max_batch:
                if self._queue:
                    job = self._queue[0]
                    if job.future.cancelled():
                        self._queue.popleft()
                        continue
                    if job.key is not first.key or size + len(job.texts) > self.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    size += len(job.texts)
                    continue
                # Nothing queued now. Alone: run at once. Several: others are arriving, wait a little.
                remaining = deadline - time.monotonic()
                if len(batch) == 1 or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self, batch: list[_Job]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        key = jobs[0].key
        texts = [text for job in jobs for text in job.texts]
        if self._on_batch is not None:
            try:
                self._on_batch(len(texts), len(jobs))
            except Exception:  # noqa: BLE001 - metrics must not fail a batch
                log.exception("batch_metrics_failed")
        started = time.perf_counter()
        try:
            results = self._call(key, texts)
        except Exception as exc:  # noqa: BLE001
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            log.warning("model_batch_failed", extra={"fields": {"error": type(exc).__name__, "requests": len(jobs)}})
            for job in jobs:  # isolate the failure: each job alone
                try:
                    job.future.set_result(self._call(key, job.texts))
                except Exception as alone:  # noqa: BLE001
                    job.future.set_exception(alone)
            return
        if self._on_done is not None:
            try:
                self._on_done(len(texts), time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - metrics must not fail a batch
                log.exception("batch_metrics_failed")
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)

    def _call(self, key: Any, texts: list[str]) -> list:
        results = list(self._run_fn(key, texts))
        if len(results) != len(texts):
            raise RuntimeError(f"the model returned {len(results)} results for {len(texts)} texts")
        return results
