"""Records the node's outputs for DURATION seconds and prints them as one JSON object.

usage: output_recorder.py DURATION [--overlay]
"""

import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray


def stamp(h):
    return [h.stamp.sec, h.stamp.nanosec]


def main() -> int:
    duration = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("output_recorder")
    got = {"poses": [], "detections": [], "tf": [], "markers": 0, "overlay": [], "diagnostics": {}}
    node.create_subscription(
        PoseArray, "/densefusion/poses",
        lambda m: got["poses"].append({"stamp": stamp(m.header), "frame": m.header.frame_id, "n": len(m.poses),
                                       "q": [[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w] for p in m.poses],
                                       "t": [[p.position.x, p.position.y, p.position.z] for p in m.poses]}), 10)
    node.create_subscription(
        Detection3DArray, "/densefusion/detections",
        lambda m: got["detections"].append({"stamp": stamp(m.header), "frame": m.header.frame_id,
                                            "dets": [{"id": d.id, "class_id": d.results[0].hypothesis.class_id,
                                                      "score": d.results[0].hypothesis.score,
                                                      "size": [d.bbox.size.x, d.bbox.size.y, d.bbox.size.z]} for d in m.detections]}), 10)
    node.create_subscription(
        TFMessage, "/tf",
        lambda m: got["tf"].extend({"stamp": stamp(t.header), "parent": t.header.frame_id, "child": t.child_frame_id} for t in m.transforms), 10)
    node.create_subscription(MarkerArray, "/densefusion/markers", lambda m: got.__setitem__("markers", got["markers"] + 1), 10)
    node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: got["diagnostics"].update({kv.key: kv.value for s in m.status for kv in s.values}), 10)
    if "--overlay" in sys.argv:
        node.create_subscription(Image, "/densefusion/overlay", lambda m: got["overlay"].append({"stamp": stamp(m.header), "encoding": m.encoding, "w": m.width}), 2)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
