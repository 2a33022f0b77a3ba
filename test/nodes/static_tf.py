"""Publishes one static transform on /tf_static (latched, as tf2's static broadcaster does) until SIGTERM/SIGINT.

usage: static_tf.py PARENT CHILD X Y Z
Prints "ready" once published.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import signal
import sys

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from tf2_msgs.msg import TFMessage


def main() -> int:
    parent, child, x, y, z = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("static_tf")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(TFMessage, "/tf_static", qos)
    tf = TransformStamped()
    tf.header.frame_id, tf.child_frame_id = parent, child
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = x, y, z
    tf.transform.rotation.w = 1.0
    pub.publish(TFMessage(transforms=[tf]))
    print("ready", flush=True)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
