"""Waits until the stamps on the node's ~/poses have jumped back in time a number of times (a replay's loops).

usage: pose_waiter.py [JUMPS] [TIMEOUT]
Prints "ready" once the node's ~/poses publisher is matched; then "seen" (exit 0) once JUMPS (default 1) PoseArrays
came stamped before the one they follow (a replay repeats its stamps in every loop: each loop after the first
begins with such a jump), or "not seen within TIMEOUT s" (default 120, exit 1).
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import sys

import rclpy
from geometry_msgs.msg import PoseArray
from rclpy.qos import QoSProfile

from waiting import spin_until


def main() -> int:
    jumps = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    rclpy.init()
    node = rclpy.create_node("pose_waiter")
    seen = {"last": None, "jumps": 0}

    def on_poses(m: PoseArray) -> None:
        stamp = (m.header.stamp.sec, m.header.stamp.nanosec)
        seen["jumps"] += seen["last"] is not None and stamp < seen["last"]
        seen["last"] = stamp

    sub = node.create_subscription(PoseArray, "/densefusion/poses", on_poses, QoSProfile(depth=100))
    try:
        if not spin_until(node, lambda: sub.get_publisher_count() > 0, timeout):
            print("no ~/poses publisher", flush=True)
            return 1
        print("ready", flush=True)
        found = spin_until(node, lambda: seen["jumps"] >= jumps, timeout)
        print("seen" if found else f"not seen within {timeout:g} s", flush=True)
        return 0 if found else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
