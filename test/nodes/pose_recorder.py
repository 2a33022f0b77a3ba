"""Records the node's outputs until SIGTERM/SIGINT (or DURATION s), then prints one JSON object.

usage: pose_recorder.py [DURATION] [--overlay]
Prints "ready" once the node's ~/poses publisher is matched. Output: {"poses": [{"stamp", "frame", "q", "t",
"received"}], "detections": [{"stamp", "frame", "dets"}], "tf": [{"stamp", "parent", "child"}], "markers": count,
"overlay": [{"stamp", "encoding", "w"}], "diagnostics": [{"t", "name", "level", "message"}],
"values": {status name: latest key-values}}.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import signal
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray


def stamp(h):
    return [h.stamp.sec, h.stamp.nanosec]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    duration = float(args[0]) if args else 600.0
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = []
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.append(1))
    node = rclpy.create_node("pose_recorder")
    got = {"poses": [], "detections": [], "tf": [], "markers": 0, "overlay": [], "diagnostics": [], "values": {}}

    def on_poses(m: PoseArray) -> None:
        got["poses"].append({
            "stamp": stamp(m.header), "frame": m.header.frame_id, "received": time.time(),
            "q": [[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w] for p in m.poses],
            "t": [[p.position.x, p.position.y, p.position.z] for p in m.poses]})

    def on_detections(m: Detection3DArray) -> None:
        got["detections"].append({"stamp": stamp(m.header), "frame": m.header.frame_id, "dets": [
            {"id": d.id, "class_id": d.results[0].hypothesis.class_id, "score": d.results[0].hypothesis.score,
             "size": [d.bbox.size.x, d.bbox.size.y, d.bbox.size.z]} for d in m.detections]})

    def on_diag(m: DiagnosticArray) -> None:
        for s in m.status:
            got["diagnostics"].append({"t": time.time(), "name": s.name, "level": s.level[0], "message": s.message})
            got["values"][s.name] = {kv.key: kv.value for kv in s.values}

    qos = QoSProfile(depth=100)
    sub = node.create_subscription(PoseArray, "/densefusion/poses", on_poses, qos)
    node.create_subscription(Detection3DArray, "/densefusion/detections", on_detections, qos)
    node.create_subscription(TFMessage, "/tf", lambda m: got["tf"].extend(
        {"stamp": stamp(t.header), "parent": t.header.frame_id, "child": t.child_frame_id} for t in m.transforms), qos)
    node.create_subscription(MarkerArray, "/densefusion/markers", lambda m: got.__setitem__("markers", got["markers"] + 1), qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos)
    if "--overlay" in sys.argv:
        node.create_subscription(Image, "/densefusion/overlay", lambda m: got["overlay"].append(
            {"stamp": stamp(m.header), "encoding": m.encoding, "w": m.width}), 2)
    end = time.monotonic() + duration
    ready = False
    while not stop and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if not ready and sub.get_publisher_count() > 0:
            ready = True
            print("ready", flush=True)
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
