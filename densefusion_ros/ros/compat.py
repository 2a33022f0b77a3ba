"""The one seam between ROS 2 installs and the PyPI wheels.

On a ROS 2 install this uses ``message_filters``, ``tf2_ros`` and ``cv_bridge``. The PyPI
wheels lack them, so small in-package equivalents take their place:
:class:`~densefusion_ros.ros.sync.ApproximateTimeSync`, a ``/tf`` publisher with tf2_ros's QoS,
a TF buffer (:class:`~densefusion_ros.ros.tf_buffer.TransformBuffer`), and the decoder in
:func:`~densefusion_ros.ros.conversions.image_to_numpy` (which validates ``step``, sizes and
encodings itself on both paths).
Set ``DENSEFUSION_ROS_BUILTIN_COMPAT=1`` to force the in-package versions (tests do, to cover both).

It also hides what differs between the distros (Humble, Jazzy, Kilted): rclpy's events executor
(``rclpy.experimental.EventsExecutor``, absent from Humble and early Jazzy; the node then spins a
multi-threaded executor) and the post-set parameter callback (absent from Humble; the checking
callback then applies accepted changes itself).

The in-package sync can also take its inputs *serialized* (``synchronize(..., raw=True)``) and
decode them with the ``rosbags`` CDR reader (:func:`~densefusion_ros.ros.cdr.typestore`): pixels
become numpy views instead of copies into ``array.array``, a fraction of rclpy's per-message work
on the executor thread, which competes with the inference worker for the GIL (docs/node_internals.md,
"Raw input decoding"). The decoded messages have the same field names as rclpy's (``header.stamp``,
``height``, ``encoding``, ``data``, ``k``, ...).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from densefusion_ros.ros.conversions import HAVE_CV_BRIDGE
from densefusion_ros.ros.conversions import use_system_module as _system
from densefusion_ros.ros.sync import ApproximateTimeSync
from densefusion_ros.ros.tf_buffer import TransformBuffer, TransformLookupError

HAVE_MESSAGE_FILTERS = _system("message_filters")
HAVE_TF2_ROS = _system("tf2_ros")


class _Tf2Buffer:
    """tf2_ros's Buffer and TransformListener behind :class:`~densefusion_ros.ros.tf_buffer.TransformBuffer`'s ``lookup``."""

    def __init__(self, node: Node) -> None:
        import tf2_ros

        self._tf2 = tf2_ros
        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)

    def clear(self) -> None:
        self._buffer.clear()

    def lookup(self, target: str, source: str, stamp: Any) -> tuple[np.ndarray, np.ndarray]:
        from rclpy.time import Time

        when = Time.from_msg(stamp) if hasattr(stamp, "sec") else Time(nanoseconds=int(round(stamp * 1e9)))  # a message: exact
        try:
            tf = self._buffer.lookup_transform(target, source, when)
        except (self._tf2.LookupException, self._tf2.ConnectivityException, self._tf2.ExtrapolationException) as e:
            raise TransformLookupError(str(e)) from None
        q, p = tf.transform.rotation, tf.transform.translation
        return Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), np.array([p.x, p.y, p.z])


def transform_buffer(node: Node) -> Any:
    """A TF buffer fed by ``node``'s ``/tf`` and ``/tf_static``: tf2_ros's, or the in-package one.
    ``lookup(target, source, stamp) -> (R, t)`` (stamp: a ``Time`` message, exact, or seconds) maps source-frame points into the target frame
    and raises :class:`~densefusion_ros.ros.tf_buffer.TransformLookupError` when it cannot."""
    return _Tf2Buffer(node) if HAVE_TF2_ROS else TransformBuffer(node)


def events_executor() -> type | None:
    """rclpy's ``EventsExecutor`` class, or None on a distro without it."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def add_parameter_callbacks(
    node: Node, check: Callable[[list], Any], apply: Callable[[list], None]
) -> None:
    """``check(params) -> SetParametersResult`` before a change and ``apply(params)`` after an
    accepted one: rclpy's on-set and post-set callbacks, or, where the post-set one does not exist
    (Humble), one on-set callback that applies what it accepts."""
    post_set = getattr(node, "add_post_set_parameters_callback", None)
    if post_set is not None:
        node.add_on_set_parameters_callback(check)
        post_set(apply)
        return

    def check_then_apply(params: list) -> Any:
        result = check(params)
        if result.successful:
            apply(params)
        return result

    node.add_on_set_parameters_callback(check_then_apply)


def backends() -> dict[str, str]:
    """Which implementation each role uses, for logs and diagnostics."""
    return {
        "sync": "message_filters" if HAVE_MESSAGE_FILTERS else "builtin",
        "tf": "tf2_ros" if HAVE_TF2_ROS else "builtin",
        "images": "cv_bridge" if HAVE_CV_BRIDGE else "builtin",
    }


@lru_cache(maxsize=None)
def raw_decoder(msg_type: type) -> Callable[[bytes], Any]:
    """CDR bytes of ``msg_type`` -> a rosbags message with the same fields (numpy arrays for arrays)."""
    from densefusion_ros.ros.cdr import typestore

    name = f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"
    store = typestore()
    return lambda data: store.deserialize_cdr(data, name)


def synchronize(
    node: Node,
    topics: Sequence[tuple[type, str]],
    callback: Callable[..., None],
    *,
    qos: QoSProfile,
    queue_size: int,
    slop: float,
    on_message: Callable[[int, Any], None] | None = None,
    callback_group=None,
    raw: bool = False,
) -> list:
    """Subscribe to ``topics`` and call ``callback(*msgs)`` for ApproximateTime-matched sets.

    ``on_message(index, msg)`` sees every message first (for input rate statistics). ``raw``:
    receive serialized messages and decode them with :func:`raw_decoder` (in-package sync only;
    message_filters needs rclpy messages). Returns the subscription handles (keep them alive).
    """
    if HAVE_MESSAGE_FILTERS:
        import message_filters

        subs = [
            message_filters.Subscriber(node, msg_type, topic, qos_profile=qos, callback_group=callback_group)
            for msg_type, topic in topics
        ]
        if on_message is not None:
            for i, sub in enumerate(subs):
                sub.registerCallback(lambda msg, i=i: on_message(i, msg))
        sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
        sync.registerCallback(callback)
        return [*subs, sync]
    sync = ApproximateTimeSync(len(topics), callback, queue_size=queue_size, slop=slop)

    def feed(i: int, msg_type: type, topic: str) -> Callable[[Any], None]:
        decode = raw_decoder(msg_type) if raw else None

        def cb(msg: Any) -> None:
            if decode is not None:
                try:
                    msg = decode(msg)
                except Exception as e:  # noqa: BLE001 - a message that cannot be read is dropped, not fatal
                    node.get_logger().warning(f"dropped a message on {topic}: cannot decode it ({e})", throttle_duration_sec=5.0)
                    return
            if on_message is not None:
                on_message(i, msg)
            sync.add(i, msg)

        return cb

    return [
        node.create_subscription(msg_type, topic, feed(i, msg_type, topic), qos, callback_group=callback_group, raw=raw)
        for i, (msg_type, topic) in enumerate(topics)
    ]


def unsubscribe(node: Node, handles: Sequence) -> None:
    """Undo :func:`synchronize`: destroy the subscriptions among its handles (rclpy's, or those
    inside message_filters' subscribers)."""
    for handle in handles:
        subscription = getattr(handle, "sub", handle)  # a message_filters.Subscriber wraps its subscription
        if hasattr(subscription, "topic_name"):
            node.destroy_subscription(subscription)


class TransformPublisher:
    """``sendTransform(list)`` to /tf: tf2_ros.TransformBroadcaster or an equivalent publisher."""

    def __init__(self, node: Node):
        if HAVE_TF2_ROS:
            import tf2_ros

            self._broadcaster = tf2_ros.TransformBroadcaster(node)
            self._send = self._broadcaster.sendTransform
        else:
            qos = QoSProfile(
                depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE,
            )
            self._pub = node.create_publisher(TFMessage, "/tf", qos)
            self._send = lambda transforms: self._pub.publish(TFMessage(transforms=list(transforms)))

    def send(self, transforms: Sequence) -> None:
        if transforms:
            self._send(list(transforms))
