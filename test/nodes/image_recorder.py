"""Receives colour, depth and camera_info from a replay and prints what arrived as JSON."""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import time

import numpy as np
import rclpy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

from densefusion_ros.ros.conversions import color_to_rgb, depth_to_metres_msg
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC, GT_TOPIC


def main() -> int:
    duration = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("image_recorder")
    got = {"color": [], "depth": [], "info": [], "gt": []}

    def stamp(m):
        return [m.header.stamp.sec, m.header.stamp.nanosec]

    node.create_subscription(Image, COLOR_TOPIC,
                             lambda m: got["color"].append({"stamp": stamp(m), "mean": float(color_to_rgb(m).mean()), "enc": m.encoding}), 10)
    node.create_subscription(Image, DEPTH_TOPIC,
                             lambda m: got["depth"].append(
                                 {"stamp": stamp(m), "sum_mm": int(np.round(depth_to_metres_msg(m)[0] * 1000).sum()), "enc": m.encoding}), 10)
    node.create_subscription(CameraInfo, CAMERA_INFO_TOPIC, lambda m: got["info"].append({"stamp": stamp(m), "k": list(m.k)}), 10)
    node.create_subscription(Detection3DArray, GT_TOPIC,
                             lambda m: got["gt"].append({"stamp": stamp(m), "names": [d.results[0].hypothesis.class_id for d in m.detections]}), 10)
    print("ready", flush=True)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
