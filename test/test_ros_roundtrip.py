"""Detection3DArray and TFMessage cross DDS on loopback between two separate processes."""

import json

from conftest import spawn


def test_detections_and_tf_roundtrip(ros_env):
    talker = spawn(["test/nodes/roundtrip_talker.py"], ros_env)
    try:
        listener = spawn(["test/nodes/roundtrip_listener.py", "30"], ros_env)
        out, _ = listener.communicate(timeout=60)
        assert listener.returncode == 0, out
        got = json.loads(out.strip().splitlines()[-1])
    finally:
        talker.terminate()
        talker.wait(timeout=10)
    assert got["det"]["class_id"] == "duck"
    assert got["det"]["score"] == 0.75
    assert got["det"]["frame"] == "camera_color_optical_frame"
    assert got["det"]["stamp"][0] >= 1000 and got["det"]["stamp"][1] == 500
    assert got["det"]["id"] == "duck_0"
    assert got["tf"] == {"child": "duck_0", "parent": "camera_color_optical_frame"}


def test_env_is_loopback_only(ros_env):
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(ros_env["ROS_DOMAIN_ID"]) <= 200
    assert ros_env["ROS_LOG_DIR"]
