"""The ``rosbags`` CDR type store of the node's message types, for reading serialized messages
without rclpy's per-message conversion: the node's raw input decoding
(:func:`~densefusion_ros.ros.compat.raw_decoder`) and the demo's rosbag2 I/O
(:mod:`densefusion_ros.apps.bag`).

The store is ROS 2 Kilted's message set plus vision_msgs 4.x, registered from this package's own
definitions in ``interfaces/vision_msgs/msg`` (installed to its share folder). Messages decoded
with it have rclpy's field names (``header.stamp``, ``height``, ``encoding``, ``data``, ``k``, ...),
with numpy arrays for arrays.
"""

from __future__ import annotations

from functools import lru_cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from densefusion_ros.resources import share_path

_VISION_MSGS = ("Point2D", "Pose2D", "BoundingBox2D", "BoundingBox3D", "ObjectHypothesis",
                "ObjectHypothesisWithPose", "Detection3D", "Detection3DArray")


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted type store plus vision_msgs from ``interfaces/vision_msgs/msg`` (built once, shared)."""
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = share_path("interfaces", "vision_msgs", "msg")
    if msg_dir.is_dir():
        types = {}
        for name in _VISION_MSGS:
            types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"vision_msgs/msg/{name}"))
        store.register(types)
    return store
