"""Admission control for model-bound work: refuse at once what cannot be answered in time.

Two gates, both answered 503 ``overloaded`` with a ``Retry-After``:

* **requests** (``api.admission_gate``, before the body is parsed): at most ``max_requests`` model-bound
  requests in the app at once, and none at all while the model's queue is full, so a flood costs the
  server a few header checks per refused request, not a JSON parse and a validation;
* **texts** (:meth:`Admission.admit_texts`, by the service just before the model call): a request weighs
  its texts (a batch of 64 weighs 64). The texts waiting for or in the model may not exceed what the
  model gets through within the time budget: ``rate × request_timeout × BUDGET_SHARE``, where ``rate``
  is the model's measured texts per second over its recent batches, capped by ``max_queued_texts``.
  Until the model has answered a few batches the cap alone applies.

Refusing up front lets a client retry later on the model; admitting more than the model can answer in
time would only turn into answers from the keyword rules (degraded) after the budget is spent.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable

# Share of the time budget the queue may fill: the rest is headroom for the batch being formed and rate noise.
BUDGET_SHARE = 0.7
RATE_WINDOW_BATCHES = 64  # the rate is measured over this many recent model calls
MIN_RATE_TEXTS = 64  # texts the model must have answered before its rate is trusted


class Overloaded(Exception):
    """Refused before any model work: 503 overloaded with Retry-After."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message, self.retry_after_s = message, retry_after_s


class Admission:
    def __init__(self, max_requests: int, max_queued_texts: int, budget_s: float, min_retry_after_s: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_requests = max_requests
        self.max_queued_texts = max_queued_texts
        self.budget_s = budget_s
        self.min_retry_after_s = min_retry_after_s
        self.pid = os.getpid()
        self._clock = clock
        self._requests = 0
        self._texts = 0
        self._batches: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW_BATCHES)
        self._lock = threading.Lock()

    # -- the request gate -------------------------------------------------------------------------

    def try_enter_request(self) -> bool:
        with self._lock:
            if self._requests >= self.max_requests or self._texts >= self._text_capacity():
                return False
            self._requests += 1
            return True

    def leave_request(self) -> None:
        with self._lock:
            self._requests -= 1

    # -- the text gate ----------------------------------------------------------------------------

    def admit_texts(self, count: int) -> None:
        """Reserve room for ``count`` texts in the model's queue, or raise Overloaded."""
        with self._lock:
            capacity = self._text_capacity()
            # One request alone is always let in: a batch bigger than the capacity could otherwise never run.
            if self._texts and self._texts + count > capacity:
                raise Overloaded(f"worker {self.pid}: the model has {self._texts} texts to answer and takes about "
                                 f"{capacity} within the time budget; retry later", self._retry_after())
            self._texts += count

    def release_texts(self, count: int) -> None:
        with self._lock:
            self._texts -= count

    def observe_model_call(self, texts: int, seconds: float) -> None:
        """The model answered ``texts`` in ``seconds``: feeds the measured rate."""
        if texts > 0 and seconds > 0:
            with self._lock:
                self._batches.append((texts, seconds))

    # -- figures ----------------------------------------------------------------------------------

    @property
    def requests_in_flight(self) -> int:
        return self._requests

    @property
    def texts_in_flight(self) -> int:
        return self._texts

    @property
    def rate(self) -> float | None:
        """Texts per second over the recent model calls; None until enough were seen."""
        with self._lock:
            return self._rate()

    def _rate(self) -> float | None:
        texts = sum(t for t, _ in self._batches)
        seconds = sum(s for _, s in self._batches)
        return texts / seconds if texts >= MIN_RATE_TEXTS and seconds > 0 else None

    @property
    def text_capacity(self) -> int:
        with self._lock:
            return self._text_capacity()

    def _text_capacity(self) -> int:
        rate = self._rate()
        if rate is None:
            return self.max_queued_texts
        return max(1, min(self.max_queued_texts, int(rate * self.budget_s * BUDGET_SHARE)))

    def _retry_after(self) -> int:
        rate = self._rate()
        wait = self._texts / rate if rate else 0.0
        return max(self.min_retry_after_s, math.ceil(wait))

    def retry_after(self) -> int:
        with self._lock:
            return self._retry_after()
