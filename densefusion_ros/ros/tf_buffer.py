"""A small TF buffer for installs without tf2_ros (the PyPI wheels): ``/tf`` and ``/tf_static`` in,
transforms between frames at a stamp out, with tf2's semantics.

* A frame has one parent; a transform ``parent <- child`` maps child-frame points into the parent
  frame (``TransformStamped`` with ``header.frame_id`` the parent, ``child_frame_id`` the child).
* Dynamic transforms are kept for ``cache_s`` seconds and interpolated at the stamp (linear in
  translation, spherical in rotation); a stamp outside a dynamic edge's samples is an
  extrapolation error, as in tf2. Static transforms hold at every stamp.
* ``lookup(target, source, stamp)`` walks both frames up to their common ancestor, so any two
  frames of one tree connect; frames of two trees do not.

On a ROS install the node uses ``tf2_ros.Buffer`` instead (:mod:`densefusion_ros.ros.compat`).
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation, Slerp
from tf2_msgs.msg import TFMessage

from densefusion_ros.geometry import relative

__all__ = ["TransformBuffer", "TransformLookupError"]


class TransformLookupError(LookupError):
    """No transform between the frames at the stamp: unknown frame, no path, or extrapolation."""


class _Edge:
    """The transforms ``parent <- child`` of one child frame: static, or samples in stamp order."""

    def __init__(self, parent: str, static: bool) -> None:
        self.parent, self.static = parent, static
        self.stamps: list[float] = []
        self.rotations: list[np.ndarray] = []  # (4,) xyzw
        self.translations: list[np.ndarray] = []

    def add(self, stamp: float, rotation_xyzw: np.ndarray, translation: np.ndarray, cache_s: float) -> None:
        if self.static:
            self.stamps, self.rotations, self.translations = [stamp], [rotation_xyzw], [translation]
            return
        k = bisect.bisect(self.stamps, stamp)
        self.stamps.insert(k, stamp)
        self.rotations.insert(k, rotation_xyzw)
        self.translations.insert(k, translation)
        drop = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_s)
        del self.stamps[:drop], self.rotations[:drop], self.translations[:drop]

    def at(self, stamp: float, child: str) -> tuple[np.ndarray, np.ndarray]:
        """``(R (3, 3), t (3,))`` of the edge at ``stamp`` (seconds; 0 = the latest, as tf2's Time())."""
        if self.static or stamp == 0.0 or len(self.stamps) == 1 and stamp == self.stamps[0]:
            return Rotation.from_quat(self.rotations[-1]).as_matrix(), self.translations[-1]
        if not self.stamps[0] <= stamp <= self.stamps[-1]:
            raise TransformLookupError(
                f"extrapolation: {self.parent} <- {child} is known for stamps [{self.stamps[0]:.3f}, {self.stamps[-1]:.3f}], "
                f"asked for {stamp:.3f}"
            )
        k = max(1, bisect.bisect_left(self.stamps, stamp))
        t0, t1 = self.stamps[k - 1], self.stamps[k]
        a = 0.0 if t1 == t0 else (stamp - t0) / (t1 - t0)
        rotation = Slerp([0.0, 1.0], Rotation.from_quat([self.rotations[k - 1], self.rotations[k]]))(a)
        return rotation.as_matrix(), (1 - a) * self.translations[k - 1] + a * self.translations[k]


class TransformBuffer:
    """``/tf`` and ``/tf_static`` of ``node``'s graph, looked up between frames at a stamp.

    Args:
        node: subscribes to ``/tf`` (tf2's QoS: reliable, volatile, depth 100) and ``/tf_static``
            (reliable, transient local, depth 100).
        cache_s: how long dynamic transforms are kept (tf2's default: 10 s).
    """

    def __init__(self, node: Node | None = None, cache_s: float = 10.0) -> None:
        self.cache_s = cache_s
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()
        if node is not None:
            qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
            static_qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip
            self._subs = [
                node.create_subscription(TFMessage, "/tf", lambda m: self.add(m, static=False), qos),
                node.create_subscription(TFMessage, "/tf_static", lambda m: self.add(m, static=True), static_qos),
            ]

    def add(self, message: TFMessage, static: bool) -> None:
        """Store every transform of a ``TFMessage`` (a child that changes parent takes the new one)."""
        with self._lock:
            for tf in message.transforms:
                child, parent = tf.child_frame_id.lstrip("/"), tf.header.frame_id.lstrip("/")
                stamp = tf.header.stamp.sec + tf.header.stamp.nanosec * 1e-9
                q, p = tf.transform.rotation, tf.transform.translation
                edge = self._edges.get(child)
                if edge is None or edge.parent != parent or edge.static != static:
                    edge = self._edges[child] = _Edge(parent, static)
                edge.add(stamp, np.array([q.x, q.y, q.z, q.w]), np.array([p.x, p.y, p.z]), self.cache_s)

    def clear(self) -> None:
        """Forget the dynamic transforms (static ones stay), as tf2's ``Buffer.clear``: after stamps jump
        back (a recording's loop) the new samples would otherwise fall outside the kept ones' window."""
        with self._lock:
            self._edges = {child: edge for child, edge in self._edges.items() if edge.static}

    def lookup(self, target: str, source: str, stamp: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(R (3, 3), t (3,))`` mapping ``source``-frame points into ``target``'s at ``stamp``
        (a ``builtin_interfaces/Time`` or seconds; 0 = the latest of each edge).

        Raises:
            TransformLookupError: a frame is unknown, the frames are in different trees, or an edge
                on the path has no samples around ``stamp``.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        if hasattr(stamp, "sec"):
            stamp = stamp.sec + stamp.nanosec * 1e-9
        with self._lock:
            up_source, up_target = self._to_root(source, stamp), self._to_root(target, stamp)
        common = next((f for f, _, _ in up_source if f in {g for g, _, _ in up_target}), None)
        if common is None:
            raise TransformLookupError(f"no transform between {target!r} and {source!r}: not in one tree")
        R_s, t_s = next((R, t) for f, R, t in up_source if f == common)  # common <- source
        R_t, t_t = next((R, t) for f, R, t in up_target if f == common)  # common <- target
        return relative(R_t, t_t, R_s, t_s)

    def _to_root(self, frame: str, stamp: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``[(ancestor, R, t)]``, ancestor <- ``frame``, from ``frame`` itself up to its tree's root."""
        if frame not in self._edges and not any(e.parent == frame for e in self._edges.values()):
            raise TransformLookupError(f"frame {frame!r} does not exist")
        chain = [(frame, np.eye(3), np.zeros(3))]
        while (edge := self._edges.get(chain[-1][0])) is not None:
            if len(chain) > 100:
                raise TransformLookupError(f"a loop in the TF tree above {frame!r}")
            R_e, t_e = edge.at(stamp, chain[-1][0])  # parent <- current
            _, R, t = chain[-1]  # current <- frame
            chain.append((edge.parent, R_e @ R, R_e @ t + t_e))
        return chain
