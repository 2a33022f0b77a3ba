"""Diagnostic tasks in the manner of ``diagnostic_updater`` (which the PyPI wheels lack).

* :class:`FrequencyStatus`: events per second over a window of ``window`` periods; WARN when the
  rate leaves ``[min_hz * (1 - tolerance), max_hz * (1 + tolerance)]``, ERROR when no event came.
* :class:`TimestampStatus`: ERROR when a stamp was zero, in the future or older than allowed.
* :class:`BudgetStatus`: WARN when a processing time exceeds its budget, ERROR after
  ``error_after`` cycles in a row over it (Autoware's processing-time convention).

Each ``status()`` returns a ``(level, message, values)`` triple; levels are
:data:`OK`, :data:`WARN`, :data:`ERROR` as in ``diagnostic_msgs/DiagnosticStatus``. Pure Python.
"""

from __future__ import annotations

import threading
import time
from collections import deque

OK, WARN, ERROR = 0, 1, 2


class FrequencyStatus:
    """Rate of ``tick()`` calls, judged against an expected range."""

    def __init__(self, min_hz: float, max_hz: float, *, tolerance: float = 0.1, window: int = 5, period: float = 1.0):
        self.min_hz, self.max_hz, self.tolerance = min_hz, max_hz, tolerance
        self._span = window * period
        self._ticks: deque = deque(maxlen=100_000)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._ticks.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._ticks and now - self._ticks[0] > self._span:
                self._ticks.popleft()
            return len(self._ticks) / self._span

    def status(self, now: float | None = None) -> tuple[int, str, dict[str, str]]:
        hz = self.rate(now)
        values = {"frequency (Hz)": f"{hz:.2f}", "expected min (Hz)": f"{self.min_hz:.2f}", "expected max (Hz)": f"{self.max_hz:.2f}",
                  "tolerance": f"{self.tolerance}", "window (s)": f"{self._span:.1f}"}
        if hz == 0.0:
            return ERROR, "no events recorded", values
        if hz < self.min_hz * (1 - self.tolerance):
            return WARN, "frequency too low", values
        if hz > self.max_hz * (1 + self.tolerance):
            return WARN, "frequency too high", values
        return OK, "desired frequency met", values


class TimestampStatus:
    """Counts zero, future and stale stamps since the last ``status()``."""

    def __init__(self, max_future: float = 0.5, max_age: float = 1.0):
        self.max_future, self.max_age = max_future, max_age
        self.zero = self.future = self.stale = self.seen = 0
        self.last_delay = 0.0

    def check(self, stamp: float, now: float) -> str | None:
        """Record one stamp (seconds); returns a problem name or None."""
        self.seen += 1
        self.last_delay = now - stamp
        if stamp == 0.0:
            self.zero += 1
            return "zero"
        if stamp - now > self.max_future:
            self.future += 1
            return "future"
        if self.max_age > 0 and now - stamp > self.max_age:
            self.stale += 1
            return "stale"
        return None

    def status(self) -> tuple[int, str, dict[str, str]]:
        values = {"stamps seen": str(self.seen), "zero": str(self.zero), "future": str(self.future), "stale": str(self.stale),
                  "last delay (s)": f"{self.last_delay:.3f}"}
        problems = [k for k in ("zero", "future", "stale") if getattr(self, k)]
        self.zero = self.future = self.stale = self.seen = 0
        if problems:
            return ERROR, "timestamps " + ", ".join(problems), values
        return OK, "timestamps ok", values


class BudgetStatus:
    """Processing time against a budget in milliseconds."""

    def __init__(self, budget_ms: float, error_after: int = 10):
        self.budget_ms, self.error_after = budget_ms, error_after
        self.last_ms = 0.0
        self.over_in_a_row = 0

    def record(self, ms: float) -> None:
        self.last_ms = ms
        self.over_in_a_row = self.over_in_a_row + 1 if ms > self.budget_ms else 0

    def status(self) -> tuple[int, str, dict[str, str]]:
        values = {"last (ms)": f"{self.last_ms:.1f}", "budget (ms)": f"{self.budget_ms:.1f}", "over budget in a row": str(self.over_in_a_row)}
        if self.over_in_a_row >= self.error_after:
            return ERROR, f"over budget {self.over_in_a_row} cycles in a row", values
        if self.over_in_a_row:
            return WARN, "over budget", values
        return OK, "within budget", values
