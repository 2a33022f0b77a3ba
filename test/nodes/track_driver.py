"""Drives densefusion_node step by step with one bundled RGB-D frame and prints what each step gave.

usage: track_driver.py STEPS_JSON
STEPS_JSON: a list of steps, run in order once the node subscribes to the inputs and publishes its outputs:
  ["frames", N, "bundled" | "empty"]: N times, publish the first frame of the bundled demo sequence (or the same
      frame with a grey image and a flat wall at 1 m: no object) stamped now, and wait for the node's detections
      with that stamp (and the TF frames, when there are detections) before the next; prints per frame
      {"step": "frame", "stamp", "ids": [detection ids], "tf": [TF child frames with that stamp], "sent": times published}
  ["reset"]: call /densefusion/reset_tracks; prints {"step": "reset", "success", "message"}
  ["set", "NAME:=VALUE"]: set a parameter (YAML value); prints {"step": "set", "successful", "reason"}
  ["diag"]: wait for the second /diagnostics message received after this step began; prints {"step": "diag", "message",
      "values"} of its "densefusion: tracks" status
Waits on messages only; a frame without an answer within 20 s is published again (counted in "sent").
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import time

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray

from densefusion_ros.apps.bag import read_sequence
from densefusion_ros.apps.replay import decode_message
from densefusion_ros.resources import share_path
from densefusion_ros.ros.conversions import numpy_to_image
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

from waiting import spin_until

INPUTS = (COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC)
TRACKS = "densefusion: tracks"


def first_frame() -> dict:
    """topic -> message of the bundled sequence's first frame (images decompressed)."""
    first, out = None, {}
    for topic, msgtype, t, raw in read_sequence(share_path("data", "demo_sequence")):
        first = t if first is None else first
        if t != first:
            break
        topic, msg = decode_message(topic, msgtype, raw)
        if topic in INPUTS:
            out[topic] = msg
    assert set(out) == set(INPUTS), sorted(out)
    return out


def without_objects(frame: dict) -> dict:
    """The same frame with a grey colour image and a flat wall at 1 m in the depth image."""
    color, depth = frame[INPUTS[0]], frame[INPUTS[1]]
    grey = numpy_to_image(np.full((color.height, color.width, 3), 128, np.uint8), "rgb8", color.header)
    wall = numpy_to_image(np.full((depth.height, depth.width), 1000, np.uint16), "16UC1", depth.header)
    return {INPUTS[0]: grey, INPUTS[1]: wall, INPUTS[2]: frame[INPUTS[2]]}


def main() -> int:
    steps = json.loads(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("track_driver")
    frames = {"bundled": first_frame()}
    frames["empty"] = without_objects(frames["bundled"])
    qos = QoSProfile(depth=10)
    pubs = {topic: node.create_publisher(type(msg), topic, qos) for topic, msg in frames["bundled"].items()}
    dets: dict[tuple, list[str]] = {}
    tf: dict[tuple, list[str]] = {}
    diags: list[tuple[float, dict]] = []

    def key(header) -> tuple:
        return (header.stamp.sec, header.stamp.nanosec)

    def on_diag(m: DiagnosticArray) -> None:
        for s in m.status:
            if s.name == TRACKS:
                diags.append((time.monotonic(), {"message": s.message, "values": {kv.key: kv.value for kv in s.values}}))

    det_sub = node.create_subscription(Detection3DArray, "/densefusion/detections",
                                       lambda m: dets.__setitem__(key(m.header), [d.id for d in m.detections]), QoSProfile(depth=100))
    node.create_subscription(TFMessage, "/tf", lambda m: [tf.setdefault(key(t.header), []).append(t.child_frame_id)
                                                          for t in m.transforms], QoSProfile(depth=100))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, QoSProfile(depth=100))
    reset = node.create_client(Trigger, "/densefusion/reset_tracks")
    params = node.create_client(SetParameters, "/densefusion/set_parameters")

    def call(client, request):
        future = client.call_async(request)
        spin_until(node, future.done, 60.0)
        return future.result()

    ready = spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()) and det_sub.get_publisher_count() > 0
                       and reset.service_is_ready() and params.service_is_ready(), 60.0)
    if not ready:
        print(json.dumps({"step": "start", "error": "node not found"}), flush=True)
        return 1
    time.sleep(0.3)  # the node's readers match these writers a moment after the writers see them: not observable here
    for step in steps:
        if step[0] == "frames":
            for _ in range(int(step[1])):
                for sent in range(1, 4):
                    stamp = node.get_clock().now().to_msg()
                    for topic, msg in frames[step[2]].items():
                        msg.header.stamp = stamp
                        pubs[topic].publish(msg)
                    k = (stamp.sec, stamp.nanosec)
                    if spin_until(node, lambda: k in dets and (not dets[k] or len(tf.get(k, [])) >= len(dets[k])), 20.0):
                        break
                print(json.dumps({"step": "frame", "stamp": list(k), "ids": dets.get(k), "tf": tf.get(k, []), "sent": sent}), flush=True)
        elif step[0] == "reset":
            r = call(reset, Trigger.Request())
            print(json.dumps({"step": "reset", "success": bool(r and r.success), "message": r.message if r else "no answer"}), flush=True)
        elif step[0] == "set":
            name, text = step[1].split(":=", 1)
            r = call(params, SetParameters.Request(parameters=[Parameter(name, value=yaml.safe_load(text)).to_parameter_msg()]))
            (result,) = r.results
            print(json.dumps({"step": "set", "successful": bool(result.successful), "reason": result.reason}), flush=True)
        elif step[0] == "diag":
            since = time.monotonic()  # the second message after this one was certainly sent after it
            fresh = lambda: [d for t, d in diags if t > since]  # noqa: E731
            spin_until(node, lambda: len(fresh()) >= 2, 30.0)
            got = fresh()[-1] if len(fresh()) >= 2 else {"message": "no diagnostics", "values": {}}
            print(json.dumps({"step": "diag", **got}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
