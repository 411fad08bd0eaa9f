"""Admission control for model-bound requests: a bounded number in flight, the rest refused at once.

``max_concurrent`` requests run the model (the service's model pool has that many threads) and up to
``max_queued`` more wait for it; the next one is refused (503 overloaded, Retry-After) instead of
joining an unbounded queue.
"""

from __future__ import annotations

import threading


class Admission:
    def __init__(self, max_concurrent: int, max_queued: int) -> None:
        self.limit = max_concurrent + max_queued
        self._in_flight = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight
