"""The node's fault handlers, in-process: CUDA OOM, invalid poses, checks before the slot, drop log, sync status."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from densefusion_ros.frame import box_frame
from densefusion_ros.pipeline import FrameResult, InstanceResult
from densefusion_ros.ros import process
from densefusion_ros.ros.diagnostics import ERROR, OK, DropLog, SyncStatus
from densefusion_ros.ros.node import DenseFusionNode, valid_pose
from tools import synthetic

from waiting import wait_for


@pytest.fixture(scope="module")
def ros(rclpy_context, tmp_path_factory):
    """The tests' rclpy context and random models."""
    return rclpy_context, synthetic.make_random_models(tmp_path_factory.mktemp("units"))


def make_node(ros, params=None, **kwargs):
    ctx, models = ros
    params = {"estimator_weights": str(models["estimator"]), "refiner_weights": str(models["refiner"]),
              "catalog": str(models["catalog"]), "label_topic": synthetic.TOPICS["label"], "device": "cpu", "seed": 0,
              "mode": "detect", "icp": "none", **(params or {})}  # the fakes below stand in for the per-frame pipeline
    return DenseFusionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()], **kwargs)


@pytest.fixture(scope="module")
def node(ros):
    n = make_node(ros)
    try:
        yield n
    finally:
        n.shutdown()
        n.destroy_node()


def fresh_set(node, **changes):
    """An input set stamped after every earlier one (the node drops a stamp that is not newer than the last)."""
    before = node.get_clock().now()
    assert wait_for(lambda: node.get_clock().now() > before, timeout=1.0, interval=1e-4)
    msgs = synthetic.input_set(box_frame(120, 160), node.get_clock().now().to_msg())
    for name, fn in changes.items():
        fn(msgs[name])
    return tuple(msgs[k] for k in ("color", "depth", "camera_info", "label"))


def capture(node, monkeypatch):
    sent = []
    monkeypatch.setattr(node.pub_poses, "publish", sent.append)
    return sent


def test_cuda_oom_drops_frame_empties_cache_and_goes_on(node, monkeypatch):
    sent = capture(node, monkeypatch)
    real = node.pipeline
    calls = {"pipeline": 0, "empty_cache": 0}

    def flaky(frame):
        calls["pipeline"] += 1
        if calls["pipeline"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(frame)

    monkeypatch.setattr(node, "pipeline", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.__setitem__("empty_cache", calls["empty_cache"] + 1))
    before = node._stats.frames
    node._handle(fresh_set(node))
    assert node._drops.counts["cuda out of memory"] == 1 and calls["empty_cache"] == 1
    assert node._stats.frames == before and sent == []
    node._handle(fresh_set(node))
    assert node._stats.frames == before + 1 and len(sent) == 1 and len(sent[0].poses) == 1


def test_invalid_poses_are_withheld_and_quaternions_are_unit(node, monkeypatch):
    sent = capture(node, monkeypatch)
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    bad = {"nan": (np.full((3, 3), np.nan), np.zeros(3)), "reflection": (np.diag([1.0, 1, -1]), np.zeros(3)),
           "scaled": (rot * 1.01, np.zeros(3)), "inf t": (rot, np.array([0, 0, np.inf]))}
    good = rot + 2e-4  # slightly off an exact rotation: still published, with a unit quaternion

    def fake(frame):
        poses = [*bad.values(), (good, np.array([0.0, 0.0, 0.5]))]
        return FrameResult(instances=[InstanceResult(name="box", class_id=1, index=0, instance=k, R=R, t=t, quaternion_wxyz=np.zeros(4),
                                                     confidence=0.5, box=(0, 10, 0, 10), num_points=100) for k, (R, t) in enumerate(poses)])

    monkeypatch.setattr(node, "pipeline", fake)
    withheld = node._stats.withheld
    node._handle(fresh_set(node))
    assert node._stats.withheld == withheld + len(bad)
    (msg,) = sent
    (pose,) = msg.poses
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
    assert abs(q @ q - 1) < 1e-9 and pose.position.z == 0.5


def test_verify_hypotheses_reaches_the_icp_options(node):
    """``verify_hypotheses`` starts at 60 and applies to the pipeline's verify ICP when set; 0 and 61 are refused."""
    assert node.pipeline.config.icp_options.init_rotations == 60
    assert node.set_parameters([Parameter("verify_hypotheses", value=12)])[0].successful
    assert node.pipeline.config.icp_options.init_rotations == 12
    for bad in (0, 61):
        result = node.set_parameters([Parameter("verify_hypotheses", value=bad)])[0]
        assert not result.successful and "verify_hypotheses out of range. Min: 1, Max: 60" in result.reason
    assert node.pipeline.config.icp_options.init_rotations == 12


def test_verify_centroid_starts_reaches_the_icp_options(node):
    """``verify_centroid_starts`` starts on and switches the verify ICP's second set of starts."""
    assert node.pipeline.config.icp_options.verify_centroid_starts is True
    assert node.set_parameters([Parameter("verify_centroid_starts", value=False)])[0].successful
    assert node.pipeline.config.icp_options.verify_centroid_starts is False


def test_parameters_outside_the_spec_change_freely(node):
    """rclpy's own parameters (use_sim_time) are not in the spec: setting one live succeeds and leaves the pipeline alone."""
    before = node.pipeline.config
    assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
    assert node.set_parameters([Parameter("use_sim_time", value=False)])[0].successful
    assert node.pipeline.config is before and node.pipeline.config.score_threshold == 0.0


def test_mode_is_checked_when_set_and_at_start_up(node):
    """``mode`` takes track or detect at run time; another value is refused with the reason, and at start-up it is a
    StartupError (exit code 2) before anything is loaded."""
    assert node._mode == "detect"
    result = node.set_parameters([Parameter("mode", value="follow")])[0]
    assert not result.successful and result.reason == "mode: 'follow' is not track or detect"
    assert node._mode == "detect" and node._p("mode") == "detect"
    assert node.set_parameters([Parameter("mode", value="track")])[0].successful
    assert node._mode == "track" and node._reset_pending, "switching to track starts with no tracks"
    assert node.set_parameters([Parameter("mode", value="detect")])[0].successful and node._mode == "detect"
    with pytest.raises(process.StartupError, match="mode: 'follow' is not track or detect"):
        DenseFusionNode(context=node.context, parameter_overrides=[Parameter("mode", value="follow")])


def test_valid_pose():
    assert valid_pose(np.eye(3), np.zeros(3))
    assert not valid_pose(np.diag([1.0, 1, -1]), np.zeros(3))  # det -1
    assert not valid_pose(np.eye(3) * 1.1, np.zeros(3))
    assert not valid_pose(np.eye(3), np.array([np.nan, 0, 0]))
    assert not valid_pose(np.eye(3)[:2], np.zeros(3))


def test_bad_sets_are_dropped_before_the_slot(node):
    good = fresh_set(node)
    bad = fresh_set(node, depth=lambda m: setattr(m, "encoding", "bgr8"))
    older = fresh_set(node)
    newest = fresh_set(node)
    with node._cv:  # the worker cannot take the slot meanwhile (the condition's lock is re-entrant)
        busy = node._drops.counts["busy (latest frame wins)"]
        node._on_synced(*good)
        node._on_synced(*bad)
        assert node._slot[0] is good[0] and node._drops.counts["depth encoding"] == 1
        node._on_synced(*newest)
        node._on_synced(*older)  # stamp before the accepted one
        assert node._slot[0] is newest[0] and node._drops.counts["stamp out of order"] == 1
        assert node._drops.counts["busy (latest frame wins)"] == busy + 1


def test_drop_log_is_rate_limited_per_reason():
    lines = []
    log = DropLog(lines.append, throttle=5.0)
    for _ in range(3):
        log.drop("depth units", "median depth 20 m")
    log.drop("color encoding", "colour image has encoding 'x'")
    assert log.counts == {"depth units": 3, "color encoding": 1} and log.total() == 4
    assert lines == ["frame dropped [depth units]: median depth 20 m (dropped so far for this reason: 1)",
                     "frame dropped [color encoding]: colour image has encoding 'x' (dropped so far for this reason: 1)"]
    assert log.warn("depth units", "again", now=time.monotonic() + 6.0)


def test_sync_status_names_missing_or_late_input():
    s = SyncStatus(["color", "depth", "camera_info"], ["/c", "/d", "/i"], slop=0.05, stall_after=2.0)
    t = time.monotonic()
    for k in range(30):
        s.message(0, 100.0 + k * 0.1, now=t + k * 0.1)
        s.message(1, 100.0 + k * 0.1, now=t + k * 0.1)
    level, msg, _ = s.status(now=t + 3.0)
    assert level == ERROR and msg.endswith("no messages on camera_info (/i)") and s.unmatched == msg
    s.message(2, 102.9 - 0.45, now=t + 3.0)
    level, msg, values = s.status(now=t + 3.0)
    assert level == ERROR and "camera_info stamps are 0.450 s behind colour (sync_slop 0.05 s)" in msg
    assert values["camera_info stamp - color stamp (s)"] == "-0.450"
    s.synced(now=t + 3.1)
    assert s.status(now=t + 3.2)[0] == OK and s.unmatched is None
    assert s.status(now=t + 10.0)[1].startswith("no input for")


def _one_box(frame):
    return FrameResult(instances=[InstanceResult(name="box", class_id=1, index=0, instance=0, R=np.eye(3), t=np.array([0.0, 0.0, 0.5]),
                                                 quaternion_wxyz=np.array([1.0, 0, 0, 0]), confidence=0.5, box=(0, 10, 0, 10),
                                                 num_points=100)])  # fmt: skip


def test_tf_frames_carry_the_namespace_unless_a_prefix_is_set(ros, monkeypatch):
    """A node in /robot1 broadcasts robot1/box_0 (a second camera's node in /robot2: robot2/box_0, no clash);
    an explicit ``tf_prefix`` wins."""
    ns_node = make_node(ros, namespace="robot1")
    try:
        sent = []
        monkeypatch.setattr(ns_node, "pipeline", _one_box)
        monkeypatch.setattr(ns_node.tf, "send", sent.extend)
        ns_node._handle(fresh_set(ns_node))
        assert [t.child_frame_id for t in sent] == ["robot1/box_0"]
        assert ns_node.set_parameters([Parameter("tf_prefix", value="arm_cam/")])[0].successful
        ns_node._handle(fresh_set(ns_node))
        assert [t.child_frame_id for t in sent] == ["robot1/box_0", "arm_cam/box_0"]
    finally:
        ns_node.shutdown()
        ns_node.destroy_node()


def test_a_frame_without_the_transform_to_target_frame_is_dropped(ros, monkeypatch):
    """``target_frame``: with no transform from the camera's frame, the frame is dropped with its reason; once
    the transform is known, the pose comes out in the target frame, moved by it."""
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    node = make_node(ros, params={"target_frame": "base_link"})
    try:
        sent = []
        monkeypatch.setattr(node, "pipeline", _one_box)
        monkeypatch.setattr(node.pub_poses, "publish", sent.append)
        node._handle(fresh_set(node))
        assert sent == [] and node._drops.counts["no transform to target_frame"] == 1
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = "base_link", synthetic.FRAME
        tf.transform.translation.z, tf.transform.rotation.w = 1.0, 1.0
        node._tf_buffer.add(TFMessage(transforms=[tf]), static=True)
        node._handle(fresh_set(node))
        (msg,) = sent
        assert msg.header.frame_id == "base_link" and msg.poses[0].position.z == pytest.approx(1.5)
    finally:
        node.shutdown()
        node.destroy_node()


def test_descriptors_carry_the_ranges_and_choices(node):
    """``ros2 param describe`` shows each numeric parameter's range and each choice parameter's values."""
    (refine,) = node.describe_parameter("refine_iterations").integer_range
    assert (refine.from_value, refine.to_value) == (0, 20)
    (score,) = node.describe_parameter("score_threshold").floating_point_range
    assert (score.from_value, score.to_value) == (0.0, 1.0)
    assert node.describe_parameter("mode").additional_constraints == "one of: track, detect"
    assert not node.set_parameters([Parameter("refine_iterations", value=21)])[0].successful


def test_services_of_a_node_that_is_not_active_answer_at_once(ros):
    """Unconfigured (``autostart: false``): ``~/trigger`` says no frame can come instead of waiting out
    ``trigger_timeout``, ``~/reset_tracks`` and ``~/get_poses`` say why there is nothing; configured but
    inactive, the same."""
    from densefusion_ros_interfaces.srv import GetPoses

    node = make_node(ros, params={"autostart": False, "mode": "track", "trigger_timeout": 30.0})
    try:
        for state in ("unconfigured", "inactive"):
            t0 = time.monotonic()
            trigger = node._on_trigger(Trigger.Request(), Trigger.Response())
            assert time.monotonic() - t0 < 5.0
            assert not trigger.success and trigger.message == f"{state}: no frames are processed"
            reset = node._on_reset_tracks(Trigger.Request(), Trigger.Response())
            assert reset.message == ("unconfigured: there are no tracks" if state == "unconfigured" else
                                     "forgot 0 track(s) (0 followed, 0 lost); ids start again at 0")
            poses = node._on_get_poses(GetPoses.Request(), GetPoses.Response())
            assert not poses.success and poses.message == f"{state}: no poses"
            if state == "unconfigured":
                node.trigger_configure()
    finally:
        node.shutdown()
        node.destroy_node()


def test_reacquisitions_per_minute_age_without_frames(ros, monkeypatch):
    """``/diagnostics`` takes the tracker's counts when it publishes, not only after a tracked
    frame: a re-acquisition drops out of the per-minute figure a minute later though no frame came."""
    node = make_node(ros, {"mode": "track"})
    try:
        sent = []
        monkeypatch.setattr(node.pub_diag, "publish", sent.append)
        node.tracker._count_reacquisition(SimpleNamespace(reacquired=0))  # a lost track found again, just now
        node._track_stats = node.tracker.stats()  # as after a tracked frame

        def per_minute() -> str:
            node._publish_diagnostics()
            (tracks,) = [s for s in sent[-1].status if s.name.endswith(": tracks")]
            return {kv.key: kv.value for kv in tracks.values}["reacquisitions_per_minute"]

        assert per_minute() == "1"
        later = time.monotonic() + 61.0
        monkeypatch.setattr("densefusion_ros.tracking.time.monotonic", lambda: later)
        assert per_minute() == "0"
    finally:
        node.shutdown()
        node.destroy_node()


def test_reset_tracks_answers_after_the_frame_being_tracked_is_published(ros, monkeypatch):
    """A ``~/reset_tracks`` call that arrives while a frame is tracked waits until that frame's
    outputs (with the ids it forgets) are published: nothing with an old id follows its answer."""
    node = make_node(ros, {"mode": "track"})
    try:
        answered = threading.Event()
        seen = {}

        def reset() -> None:
            node._on_reset_tracks(Trigger.Request(), Trigger.Response())
            answered.set()

        def publish(*args) -> None:  # the frame is tracked; the call comes in while it is being published
            caller = threading.Thread(target=reset)
            caller.start()
            seen["answered while publishing"] = answered.wait(0.5)
            seen["caller"] = caller

        monkeypatch.setattr(node, "_publish", publish)
        node._handle(fresh_set(node))
        assert seen["answered while publishing"] is False
        seen["caller"].join(5.0)
        assert answered.is_set(), "the reset is answered once the frame is out"
    finally:
        node.shutdown()
        node.destroy_node()
