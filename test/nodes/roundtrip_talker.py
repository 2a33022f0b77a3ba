"""Publishes Detection3DArray and TFMessage until killed (a separate process for the DDS test)."""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import sys
import time

import rclpy
from geometry_msgs.msg import TransformStamped
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("roundtrip_talker")
    det_pub = node.create_publisher(Detection3DArray, "detections", 10)
    tf_pub = node.create_publisher(TFMessage, "/tf", 10)
    i = 0
    try:
        while rclpy.ok():
            msg = Detection3DArray()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, 500
            msg.header.frame_id = "camera_color_optical_frame"
            det = Detection3D()
            det.header = msg.header
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = "duck", 0.75
            hyp.pose.pose.position.z = 0.5
            hyp.pose.pose.orientation.w = 1.0
            det.results.append(hyp)
            det.bbox.size.x = 0.1
            det.id = "duck_0"
            msg.detections.append(det)
            det_pub.publish(msg)
            tf = TransformStamped()
            tf.header = msg.header
            tf.child_frame_id = "duck_0"
            tf.transform.translation.z = 0.5
            tf.transform.rotation.w = 1.0
            tf_pub.publish(TFMessage(transforms=[tf]))
            i += 1
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
