"""ApproximateTime synchronisation of several stamped streams, without middleware.

The in-package equivalent of ``message_filters.ApproximateTimeSynchronizer`` for installs that
lack message_filters (the PyPI ROS wheels). Each input keeps the last ``queue_size`` messages;
when one arrives, the newest set with one message per input whose stamps span at most ``slop``
seconds is emitted, and everything at or before it is dropped. Pure Python: it needs only a
``stamp_of(msg) -> float`` function, so it is tested by pushing plain objects through it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any, Callable, Sequence


def header_stamp(msg: Any) -> float:
    """Seconds of ``msg.header.stamp``."""
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class ApproximateTimeSync:
    """Emit ``callback(*msgs)`` for message sets whose stamps agree within ``slop`` seconds."""

    def __init__(
        self,
        num_inputs: int,
        callback: Callable[..., None],
        *,
        queue_size: int = 5,
        slop: float = 0.05,
        stamp_of: Callable[[Any], float] = header_stamp,
    ) -> None:
        if num_inputs < 1 or queue_size < 1 or slop < 0:
            raise ValueError("need num_inputs >= 1, queue_size >= 1 and slop >= 0")
        self._queues: list[deque] = [deque(maxlen=queue_size) for _ in range(num_inputs)]
        self._callback = callback
        self._slop = slop
        self._stamp_of = stamp_of
        self._lock = threading.Lock()

    def add(self, index: int, msg: Any) -> None:
        """Feed input ``index``; may call the callback (outside the lock) with a matched set."""
        stamp = self._stamp_of(msg)
        with self._lock:
            self._queues[index].append((stamp, msg))
            match = self._newest_match()
            if match is None:
                return
            for q, (t, _) in zip(self._queues, match):
                while q and q[0][0] <= t:
                    q.popleft()
        self._callback(*(m for _, m in match))

    def _newest_match(self) -> Sequence[tuple[float, Any]] | None:
        if any(not q for q in self._queues):
            return None
        best, best_key = None, None
        for combo in itertools.product(*self._queues):
            stamps = [t for t, _ in combo]
            if max(stamps) - min(stamps) <= self._slop:
                key = (min(stamps), -(max(stamps) - min(stamps)))
                if best_key is None or key > best_key:
                    best, best_key = combo, key
        return best

    def connect_input(self, index: int) -> Callable[[Any], None]:
        """A subscription callback that feeds input ``index``."""
        return lambda msg: self.add(index, msg)
