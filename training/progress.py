"""One progress bar for a whole training run, with the time left, that reads well in a log file too.

On a terminal the bar is redrawn in place; anywhere else (a log file, CI) it prints a plain line at each
tenth of the work, and at least every ``LOG_EVERY_SECONDS``. The libraries' own bars (datasets' ``Map``,
tokenizers, transformers) are switched off for the run: this is the only one.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_SECONDS = 60.0
REDRAW_SECONDS = 0.5
BAR_WIDTH = 30


def quiet_libraries() -> None:
    """No progress bars nor load reports from datasets and transformers."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class RunProgress:
    """``advance(n)`` as units of work are done; ``total`` may grow when a later phase learns its size."""

    def __init__(self, total: int, label: str = "training", stream: TextIO | None = None,
                 interactive: bool | None = None, clock=time.monotonic) -> None:
        self.total = max(1, int(total))
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self._isatty() if interactive is None else interactive
        self._clock = clock
        self._started = clock()
        self._last_draw = -float("inf")
        self._last_tenth = 0
        self._closed = False

    def _isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def advance(self, n: int = 1, phase: str = "") -> None:
        self.done = min(self.total, self.done + n)
        now = self._clock()
        tenth = int(10 * self.done / self.total)
        if self.interactive:
            if now - self._last_draw >= REDRAW_SECONDS or self.done == self.total:
                self.stream.write("\r" + self.line(phase) + "\x1b[K")
                self.stream.flush()
                self._last_draw = now
        elif tenth > self._last_tenth or now - self._last_draw >= LOG_EVERY_SECONDS:
            self.stream.write(self.line(phase) + "\n")
            self.stream.flush()
            self._last_tenth, self._last_draw = tenth, now

    def say(self, message: str) -> None:
        """A log line that does not garble the bar."""
        if self.interactive and not self._closed:
            self.stream.write("\r\x1b[K")
        self.stream.write(message + "\n")
        if self.interactive and not self._closed and self.done:
            self.stream.write(self.line())
        self.stream.flush()

    def line(self, phase: str = "") -> str:
        fraction = self.done / self.total
        elapsed = self._clock() - self._started
        left = elapsed / fraction * (1 - fraction) if fraction > 0 else None
        filled = int(BAR_WIDTH * fraction)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        eta = f"~{duration(left)} left" if left is not None else "time left unknown"
        return (f"{self.label} [{bar}] {fraction * 100:3.0f}%  {duration(elapsed)} elapsed, {eta}"
                + (f"  ({phase})" if phase else ""))

    def close(self) -> None:
        if self.interactive and not self._closed:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True
