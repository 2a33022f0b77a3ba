"""Waiting on a condition with a deadline, for the tests and the processes in test/nodes (``from waiting import ...``).

A fixed sleep is too short on a loaded machine and too long on a quiet one; a test instead waits for what the
sleep stood for (a line in a node's log, a message, an endpoint in the graph) and gives up after a generous
deadline. The processes in test/nodes import this module too: ``conftest.spawn`` puts test/ on their path.
"""

from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
             pause: Callable[[float], object] = time.sleep) -> bool:
    """Call ``predicate`` until it returns something true or ``timeout`` seconds have passed; between calls,
    ``pause(interval)`` (``time.sleep``; a ROS process spins its node instead, see :func:`spin_until`).

    Returns whether the condition held; it is checked once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        pause(interval)
    return True


def spin_until(node, predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """:func:`wait_for` that spins ``node`` (an rclpy node, in the default context) between checks, so that the
    callbacks it waits on run; each spin returns after one callback or ``interval`` seconds."""
    import rclpy

    return wait_for(predicate, timeout, interval, pause=lambda seconds: rclpy.spin_once(node, timeout_sec=seconds))
