"""The in-package TF buffer (densefusion_ros.ros.tf_buffer) against tf2's semantics: a transform
parent <- child maps child points into the parent; lookups chain through the common ancestor,
interpolate between samples, hold static transforms at any stamp, and refuse to extrapolate."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from densefusion_ros.ros.tf_buffer import TransformBuffer, TransformLookupError


def _tf(parent: str, child: str, stamp: float, t, rotvec=(0.0, 0.0, 0.0)) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t)
    q = Rotation.from_rotvec(rotvec).as_quat()
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = (float(v) for v in q)
    return msg


@pytest.fixture
def tree() -> TransformBuffer:
    """base_link -> (static) camera_link -> (static) camera_optical; base_link -> (dynamic) arm, samples at 10 s and 11 s."""
    buffer = TransformBuffer()
    buffer.add(TFMessage(transforms=[_tf("base_link", "camera_link", 0.0, (0.1, 0.0, 1.0), (0.0, 0.5, 0.0)),
                                     _tf("camera_link", "camera_optical", 0.0, (0.0, 0.02, 0.0), (-np.pi / 2, 0.0, -np.pi / 2))]),
               static=True)  # fmt: skip
    buffer.add(TFMessage(transforms=[_tf("base_link", "arm", 10.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))]), static=False)
    buffer.add(TFMessage(transforms=[_tf("base_link", "arm", 11.0, (1.0, 0.0, 0.0), (0.0, 0.0, np.pi / 2))]), static=False)
    return buffer


def _apply(Rt, p):
    R, t = Rt
    return R @ p + t


def test_a_chain_of_static_transforms_composes_and_inverts(tree):
    p_optical = np.array([0.1, -0.2, 0.6])
    link = Rotation.from_rotvec([0.0, 0.5, 0.0]).as_matrix()
    optical = Rotation.from_rotvec([-np.pi / 2, 0.0, -np.pi / 2]).as_matrix()
    expected = link @ (optical @ p_optical + [0.0, 0.02, 0.0]) + [0.1, 0.0, 1.0]
    assert np.allclose(_apply(tree.lookup("base_link", "camera_optical", 123.4), p_optical), expected)
    back = tree.lookup("camera_optical", "base_link", 0.0)  # the inverse, at any stamp (static)
    assert np.allclose(_apply(back, expected), p_optical)


def test_dynamic_transforms_interpolate_and_do_not_extrapolate(tree):
    R, t = tree.lookup("base_link", "arm", 10.5)
    assert np.allclose(t, [0.5, 0.0, 0.0]) and np.isclose(Rotation.from_matrix(R).magnitude(), np.pi / 4)
    assert np.allclose(tree.lookup("base_link", "arm", 0.0)[1], [1.0, 0.0, 0.0])  # 0 = the latest
    with pytest.raises(TransformLookupError, match="extrapolation"):
        tree.lookup("base_link", "arm", 12.0)
    # through the common ancestor: arm <- camera_optical at 11 s
    p = np.array([0.0, 0.0, 1.0])
    in_base = _apply(tree.lookup("base_link", "camera_optical", 11.0), p)
    assert np.allclose(_apply(tree.lookup("arm", "camera_optical", 11.0), p),
                       Rotation.from_rotvec([0, 0, -np.pi / 2]).as_matrix() @ (in_base - [1.0, 0.0, 0.0]))  # fmt: skip


def test_unknown_frames_and_separate_trees_are_refused(tree):
    with pytest.raises(TransformLookupError, match="does not exist"):
        tree.lookup("base_link", "nowhere", 10.0)
    tree.add(TFMessage(transforms=[_tf("map", "odom", 0.0, (0.0, 0.0, 0.0))]), static=True)
    with pytest.raises(TransformLookupError, match="one tree"):
        tree.lookup("map", "base_link", 10.0)


def test_a_loop_clears_the_dynamic_transforms_and_keeps_the_static_ones(tree):
    """After stamps jump back (a recording's loop) the node clears the buffer: the loop's samples are then
    kept again (instead of falling outside the old samples' window), and static transforms stay."""
    from builtin_interfaces.msg import Time

    tree.clear()
    with pytest.raises(TransformLookupError):
        tree.lookup("base_link", "arm", 10.5)
    tree.add(TFMessage(transforms=[_tf("base_link", "arm", 1.0, (2.0, 0.0, 0.0))]), static=False)
    assert np.allclose(tree.lookup("base_link", "arm", Time(sec=1, nanosec=0))[1], [2.0, 0.0, 0.0])  # a Time message too
    assert np.allclose(tree.lookup("base_link", "camera_link", 5.0)[1], [0.1, 0.0, 1.0])
