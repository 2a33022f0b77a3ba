"""Diagnostic tasks in the manner of ``diagnostic_updater`` (which the PyPI wheels lack).

* :class:`FrequencyStatus`: events per second over a window of ``window`` periods; WARN when the
  rate leaves ``[min_hz * (1 - tolerance), max_hz * (1 + tolerance)]``, ERROR when no event came.
* :class:`TimestampStatus`: ERROR when a stamp was zero, in the future or older than allowed.
* :class:`BudgetStatus`: WARN when a processing time exceeds its budget, ERROR after
  ``error_after`` cycles in a row over it (Autoware's processing-time convention).
* :class:`SyncStatus`: ERROR when inputs arrive but no synchronised set forms, naming the input
  that is missing or whose stamps are off by more than the slop.
* :class:`DropLog`: per-reason drop counters with one rate-limited log line per reason.
* :func:`tracks_status`: the tracker's counts (objects followed, lost, acquired, re-acquired);
  always OK, as losing and re-acquiring an object is normal operation.

Each ``status()`` returns a ``(level, message, values)`` triple; levels are
:data:`OK`, :data:`WARN`, :data:`ERROR` as in ``diagnostic_msgs/DiagnosticStatus``. Pure Python.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict, deque
from typing import Callable, Sequence

OK, WARN, ERROR = 0, 1, 2


class FrequencyStatus:
    """Rate of ``tick()`` calls, judged against an expected range."""

    def __init__(self, min_hz: float, max_hz: float, *, tolerance: float = 0.1, window: int = 5, period: float = 1.0) -> None:
        self.min_hz, self.max_hz, self.tolerance = min_hz, max_hz, tolerance
        self._span = window * period
        self._ticks: deque = deque(maxlen=100_000)
        self._lock = threading.Lock()
        self.last: float | None = None

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._ticks.append(now)
            self.last = now

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._ticks and now - self._ticks[0] > self._span:
                self._ticks.popleft()
            return len(self._ticks) / self._span

    def status(self, now: float | None = None) -> tuple[int, str, dict[str, str]]:
        now = time.monotonic() if now is None else now
        hz = self.rate(now)
        values = {"frequency (Hz)": f"{hz:.2f}", "expected min (Hz)": f"{self.min_hz:.2f}", "expected max (Hz)": f"{self.max_hz:.2f}",
                  "tolerance": f"{self.tolerance}", "window (s)": f"{self._span:.1f}"}
        if self.last is not None:
            values["seconds since last event"] = f"{now - self.last:.1f}"
        if hz == 0.0:
            return ERROR, "no events recorded", values
        if hz < self.min_hz * (1 - self.tolerance):
            return WARN, "frequency too low", values
        if hz > self.max_hz * (1 + self.tolerance):
            return WARN, "frequency too high", values
        return OK, "desired frequency met", values


class TimestampStatus:
    """Checks input stamps against the clock and counts zero, future and stale ones since the
    last ``status()``.

    A recording replayed without ``/clock`` (``ros2 bag play`` without ``--clock``) carries stamps
    that lag the clock by a constant: after ``replay_frames`` frames in a row whose lag, more than
    ``min_replay_lag`` seconds (far beyond any transport delay or clock skew between machines, which
    stay stale or future), stays within ``max_age`` of the first's, that lag becomes the ``offset``
    and ages are measured from it (:attr:`replay_detected` says so, once). A clock that reads zero (``use_sim_time`` before
    the first ``/clock`` message) learns nothing.
    """

    def __init__(self, max_future: float = 0.5, max_age: float = 1.0, replay_frames: int = 5, min_replay_lag: float = 60.0) -> None:
        self.max_future, self.max_age, self.replay_frames = max_future, max_age, replay_frames
        self.min_replay_lag = min_replay_lag
        self.zero = self.future = self.stale = self.seen = 0
        self.last_delay = 0.0
        self.offset = 0.0  # s; the lag of a detected replay, subtracted from every delay
        self.replay_detected = False  # set when an offset is adopted; the caller logs it and clears it
        self._lags: list[float] = []

    def check(self, stamp: float, now: float) -> str | None:
        """Record one stamp (seconds); returns a problem name or None."""
        self.seen += 1
        self.last_delay = now - stamp
        if stamp == 0.0:
            self.zero += 1
            return "zero"
        delay = now - stamp - self.offset
        late, early = self.max_age > 0 and delay > self.max_age, -delay > self.max_future
        if not (late or early):
            self._lags.clear()
            return None
        if late and now > 0 and now - stamp > self.min_replay_lag and self._learn_offset(now - stamp):
            return None
        if early:
            self.future += 1
            return "future"
        self.stale += 1
        return "stale"

    def restart(self, stamp: float, now: float) -> None:
        """Stamps jumped back (a replay's loop, a driver's reset): a replay's offset is re-taken at
        once from this stamp, a live stream's (none) stays none."""
        self._lags.clear()
        if self.offset:
            self.offset = now - stamp

    def _learn_offset(self, lag: float) -> bool:
        """Collect a steady lag over ``replay_frames`` frames; True when it has just been adopted."""
        tolerance = max(self.max_age, self.max_future)
        if self._lags and abs(lag - self._lags[0]) > tolerance:
            self._lags.clear()
        self._lags.append(lag)
        if len(self._lags) < self.replay_frames:
            return False
        self.offset = statistics.median(self._lags)
        self._lags.clear()
        self.replay_detected = True
        return True

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

    def __init__(self, budget_ms: float, error_after: int = 10) -> None:
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


class SyncStatus:
    """Whether synchronised input sets form; if not, which input is missing or off in time.

    ``message(i, stamp)`` for every input message, ``synced()`` for every set formed. ERROR when
    inputs arrived within ``stall_after`` seconds but no set did (``unmatched`` then holds the
    explanation, else None), or when nothing arrived for that long.
    """

    def __init__(self, names: Sequence[str], topics: Sequence[str], slop: float, stall_after: float = 2.0) -> None:
        self.names, self.topics, self.slop, self.stall_after = list(names), list(topics), slop, stall_after
        self.stamps: list[float | None] = [None] * len(names)
        self.arrived: list[float] = [-1e18] * len(names)
        self.last_set = time.monotonic()
        self.sets = 0
        self.unmatched: str | None = None

    def message(self, index: int, stamp: float, now: float | None = None) -> None:
        self.stamps[index] = stamp
        self.arrived[index] = time.monotonic() if now is None else now

    def synced(self, now: float | None = None) -> None:
        self.sets += 1
        self.last_set = time.monotonic() if now is None else now

    def status(self, now: float | None = None) -> tuple[int, str, dict[str, str]]:
        now = time.monotonic() if now is None else now
        quiet = now - self.last_set
        values = {"sets": str(self.sets), "seconds since last set": f"{quiet:.1f}", "sync_slop (s)": f"{self.slop:g}"}
        first = self.stamps[0]
        for name, stamp in zip(self.names[1:], self.stamps[1:]):
            if stamp is not None and first is not None:
                values[f"{name} stamp - color stamp (s)"] = f"{stamp - first:+.3f}"
        recent = [now - t <= self.stall_after for t in self.arrived]
        self.unmatched = None
        if quiet <= self.stall_after:
            return OK, "synchronised sets form", values
        if not any(recent):
            return ERROR, f"no input for {quiet:.1f} s", values
        missing = [f"{n} ({t})" for n, t, r in zip(self.names, self.topics, recent) if not r]
        off = [f"{n} stamps are {abs(s - first):.3f} s {'behind' if s < first else 'ahead of'} colour"
               for n, s in zip(self.names[1:], self.stamps[1:]) if s is not None and first is not None and abs(s - first) > self.slop]
        if missing:
            why = f"no messages on {', '.join(missing)}"
        elif off:
            why = "; ".join(off) + f" (sync_slop {self.slop:g} s)"
        else:
            why = "stamps agree within sync_slop but sets do not match (sync_queue_size too small?)"
        self.unmatched = f"no synchronised input set for {quiet:.1f} s: {why}"
        return ERROR, self.unmatched, values


class DropLog:
    """Per-reason counters of dropped frames; one log line per reason per ``throttle`` seconds.

    Each line ends with the count so far, so a rate-limited log still tells how many were lost.
    """

    def __init__(self, log: Callable[[str], None], throttle: Callable[[], float] | float = 5.0) -> None:
        self._log = log
        self._throttle = throttle if callable(throttle) else (lambda: throttle)
        self._last: dict[str, float] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def drop(self, reason: str, text: str = "", *, log: bool = True) -> None:
        """Count one frame dropped for ``reason``; ``log=False`` for expected drops (latest frame wins)."""
        with self._lock:
            self.counts[reason] += 1
            count = self.counts[reason]
        if log:
            self.warn(reason, f"frame dropped [{reason}]: {text} (dropped so far for this reason: {count})")

    def warn(self, key: str, text: str, now: float | None = None) -> bool:
        """Log ``text`` unless ``key`` was logged less than ``throttle`` seconds ago; returns whether it logged."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._last.get(key, -1e18) < self._throttle():
                return False
            self._last[key] = now
        self._log(text)
        return True

    def total(self) -> int:
        return sum(self.counts.values())


TRACK_KEYS = ("tracks", "lost", "acquisitions", "reacquisitions", "reacquisitions_per_minute")


def tracks_status(mode: str, stats: dict | None) -> tuple[int, str, dict[str, str]]:
    """The ``tracks`` status: ``mode`` and the :meth:`Tracker.stats
    <densefusion_ros.tracking.Tracker.stats>` counts (zeros when ``stats`` is None or in detect mode)."""
    stats = stats if mode == "track" and stats is not None else {}
    values = {"mode": mode, **{k: str(stats.get(k, 0)) for k in TRACK_KEYS}}
    if mode != "track":
        return OK, "detect mode", values
    return OK, f"{values['tracks']} followed, {values['lost']} lost", values
