"""Waits for one Detection3DArray and one TFMessage, prints them as JSON and exits 0 (or 1 on timeout)."""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import time

import rclpy
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("roundtrip_listener")
    got: dict = {}

    def on_det(msg: Detection3DArray) -> None:
        d = msg.detections[0]
        got["det"] = {
            "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
            "frame": msg.header.frame_id,
            "class_id": d.results[0].hypothesis.class_id,
            "score": d.results[0].hypothesis.score,
            "z": d.results[0].pose.pose.position.z,
            "id": d.id,
        }

    def on_tf(msg: TFMessage) -> None:
        got["tf"] = {"child": msg.transforms[0].child_frame_id, "parent": msg.transforms[0].header.frame_id}

    node.create_subscription(Detection3DArray, "detections", on_det, 10)
    node.create_subscription(TFMessage, "/tf", on_tf, 10)
    deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 20)
    while rclpy.ok() and time.monotonic() < deadline and not ("det" in got and "tf" in got):
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if ("det" in got and "tf" in got) else 1


if __name__ == "__main__":
    sys.exit(main())
