"""Publishes synthetic RGB-D frames (+ camera_info, + label) on the realsense topic names.

usage: frame_publisher.py SCENARIO COUNT   (SCENARIO: object | empty)
Each frame is stamped now; the stamps are printed as JSON lines so the test can check them.
"""

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from densefusion_ros.ros.conversions import numpy_to_image

H, W = 120, 160
K = np.array([[150.0, 0, 80.0], [0, 150.0, 60.0], [0, 0, 1]])


def main() -> int:
    scenario, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("frame_publisher")
    qos = QoSProfile(depth=5)
    pubs = {
        "color": node.create_publisher(Image, "/camera/camera/color/image_raw", qos),
        "depth": node.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw", qos),
        "info": node.create_publisher(CameraInfo, "/camera/camera/color/camera_info", qos),
        "label": node.create_publisher(Image, "/test/label", qos),
    }
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth_mm = np.full((H, W), 600, np.uint16)
    label = np.zeros((H, W), np.uint8)
    if scenario == "object":
        label[40:80, 50:100] = 1
        depth_mm[40:80, 50:100] = 550
    time.sleep(2.0)  # discovery
    for _ in range(count):
        stamp = node.get_clock().now().to_msg()
        color = numpy_to_image(rgb, "rgb8")
        depth = numpy_to_image(depth_mm, "16UC1")
        lab = numpy_to_image(label, "mono8")
        info = CameraInfo(height=H, width=W)
        info.k = K.reshape(-1).tolist()
        for msg in (color, depth, lab, info):
            msg.header.stamp = stamp
            msg.header.frame_id = "camera_color_optical_frame"
        pubs["color"].publish(color)
        pubs["depth"].publish(depth)
        pubs["info"].publish(info)
        pubs["label"].publish(lab)
        print(json.dumps({"stamp": [stamp.sec, stamp.nanosec]}), flush=True)
        time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
