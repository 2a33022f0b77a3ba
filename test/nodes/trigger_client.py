"""Calls the node's ~/trigger service once and prints the answer as JSON.

usage: trigger_client.py SERVICE [TOPIC [COUNT]]
Waits for the service and, with TOPIC, until COUNT (default 1) images arrived on TOPIC (so the call lands while
frames flow), calls it, and prints {"success", "message", "seconds"} (the call's duration).
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import time

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from waiting import spin_until


def main() -> int:
    service = sys.argv[1]
    topic = sys.argv[2] if len(sys.argv) > 2 else None
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    rclpy.init()
    node = rclpy.create_node("trigger_client")
    client = node.create_client(Trigger, service)
    if not client.wait_for_service(timeout_sec=60.0):
        print(json.dumps({"success": False, "message": "service not available", "seconds": 0.0}))
        return 1
    if topic:
        images = []
        node.create_subscription(Image, topic, images.append, qos_profile_sensor_data)
        if not spin_until(node, lambda: len(images) >= count, 60.0):
            print(json.dumps({"success": False, "message": f"fewer than {count} images on {topic}", "seconds": 0.0}))
            return 1
    t0 = time.monotonic()
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
    result = future.result()
    print(json.dumps({"success": bool(result and result.success), "message": result.message if result else "no answer",
                      "seconds": time.monotonic() - t0}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
