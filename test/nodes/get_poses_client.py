"""Calls a densefusion node's ~/get_poses service once per requested frame.

usage: get_poses_client.py NODE FRAME [FRAME ...]   ("" asks for the node's output frame)
Prints one JSON line per call: {"request", "success", "message", "frame", "stamp", "ids", "t"}.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys

import rclpy
from densefusion_ros_interfaces.srv import GetPoses


def main() -> int:
    target, frames = sys.argv[1], sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node("get_poses_client")
    client = node.create_client(GetPoses, f"{target}/get_poses")
    if not client.wait_for_service(timeout_sec=60.0):
        print(json.dumps({"error": "~/get_poses not available"}), flush=True)
        return 1
    for frame in frames:
        future = client.call_async(GetPoses.Request(frame_id=frame))
        rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
        r = future.result()
        d = r.detections
        print(json.dumps({
            "request": frame, "success": bool(r.success), "message": r.message, "frame": d.header.frame_id,
            "stamp": [d.header.stamp.sec, d.header.stamp.nanosec], "ids": [x.id for x in d.detections],
            "t": [[(p := x.results[0].pose.pose.position).x, p.y, p.z] for x in d.detections],
        }), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
