"""Publishes input sets for the node, one named case after another, then waits until the node has handled them.

usage: case_publisher.py CASES_JSON   (starts once the node subscribes and a line arrives on stdin)
CASES_JSON: a list of {"case": NAME, "count": N, "period": SECONDS[, "until_log": TEXT]}; NAME is a key of CASES
(a valid set, or one with a single defect) or "pause" (publish nothing for count * period s). With "until_log",
the case goes on after its N sets until the node logs a line containing TEXT (on /rosout; at most HOLD_S more
seconds): a warning that the node's diagnostics timer gives only after the case has lasted a while.
Every published set is printed as a JSON line {"case", "stamp": [sec, nanosec], "t": wall time}. After the last,
the node's "pipeline" diagnostics must show every set it received handled (processed, dropped or skipped), in two
messages in a row with the same count of sets: then the outputs of the last frame are out, a diagnostics period
ago, and whoever records them has them. Prints "idle" then, or "not idle after IDLE_S s: ..." and exits 1.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

from densefusion_ros.frame import box_frame
from densefusion_ros.ros.conversions import numpy_to_image
from tools import synthetic

from waiting import wait_for

H, W = 120, 160
SCENE = box_frame(H, W)
PIPELINE = "densefusion: pipeline"
HOLD_S = 60.0  # the longest a case waits for its "until_log" line
IDLE_S = 60.0  # the longest the node may take to handle the sets in its queue


def replace(name, encoding, array):
    """Replace message ``name`` by an image of ``array`` with the same header."""
    def apply(m):
        header = m[name].header
        m[name] = numpy_to_image(array, encoding, header)
    return apply


def depth32(value):
    return replace("depth", "32FC1", np.full((H, W), value, np.float32))


def set_field(name, **fields):
    def apply(m):
        for k, v in fields.items():
            setattr(m[name], k, v)
    return apply


# name -> function(msgs) applying the defect in place (msgs: dict of the four messages)
CASES = {
    "valid": lambda m: None,
    "valid_empty": lambda m: (replace("label", "mono8", np.zeros((H, W), np.uint8))(m),
                              replace("depth", "16UC1", np.full((H, W), 600, np.uint16))(m)),
    "valid_padded": lambda m: m.update(color=synthetic.padded(m["color"], 13), depth=synthetic.padded(m["depth"], 6),
                                       label=synthetic.padded(m["label"], 3)),
    "color_encoding_unknown": set_field("color", encoding="yuv_garbage"),
    "depth_encoding_wrong": set_field("depth", encoding="mono8"),
    "color_step_contradicts_data": set_field("color", step=W * 3 + 16),
    "depth_step_too_small": set_field("depth", step=W * 2 - 2),
    "depth_other_size": replace("depth", "16UC1", np.full((H // 2, W // 2), 600, np.uint16)),
    "depth_other_frame": lambda m: setattr(m["depth"].header, "frame_id", "camera_depth_optical_frame"),
    "depth_tenth_mm": replace("depth", "16UC1", np.full((H, W), 20000, np.uint16)),
    "depth_float_mm": depth32(600.0),
    "depth_zero": replace("depth", "16UC1", np.zeros((H, W), np.uint16)),
    "depth_nan": depth32(np.nan),
    "depth_inf": depth32(np.inf),
    "k_zero": lambda m: setattr(m["camera_info"], "k", [0.0] * 9),
    "color_empty": replace("color", "rgb8", np.zeros((0, 0, 3), np.uint8)),
    "label_other_size": replace("label", "mono8", np.zeros((H + 8, W), np.uint8)),
    "color_over_max_pixels": replace("color", "rgb8", np.zeros((H * 2 + 2, W * 2, 3), np.uint8)),
    "color_huge_dims_little_data": set_field("color", width=100_000, height=100_000, step=300_000),
    "no_camera_info": lambda m: m.pop("camera_info"),
    "camera_info_late": lambda m: None,  # stamp shifted below
    "stamp_future": lambda m: None,
    "stamp_out_of_order": lambda m: None,
}
STAMP_SHIFT = {"stamp_future": 10.0, "stamp_out_of_order": -0.3}


def to_time(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def handled(values: dict[str, str]) -> bool:
    """Whether the pipeline status ``values`` account for every set received: ``sets received = frames processed
    + dropped (all reasons) + skipped waiting for a trigger``, with none in the slot or being processed."""
    done = int(values["frames processed"]) + int(values["skipped (waiting for trigger)"])
    done += sum(int(v) for k, v in values.items() if k.startswith("dropped: "))
    return done == int(values["sets received"])


def publish(node, pubs: dict, cases: list[dict], logs: list[str]) -> None:
    """Publish ``cases`` in order (see the module docstring); ``logs`` fills with the /rosout lines meanwhile."""
    last_valid = 0.0
    for spec in cases:
        name, count, period = spec["case"], int(spec.get("count", 1)), float(spec.get("period", 0.5))
        if name == "pause":
            print(json.dumps({"case": "pause", "t": time.time()}), flush=True)
            time.sleep(count * period)
            continue
        heard_from = len(logs)
        hold = time.monotonic() + count * period + HOLD_S
        until = spec.get("until_log")
        sent = 0
        while sent < count or (until and not any(until in line for line in logs[heard_from:]) and time.monotonic() < hold):
            sent += 1
            now = node.get_clock().now().nanoseconds * 1e-9
            stamp = now + STAMP_SHIFT.get(name, 0.0) if name != "stamp_out_of_order" else last_valid - 0.3
            msgs = synthetic.input_set(SCENE, to_time(stamp))
            CASES[name](msgs)
            if name == "camera_info_late":
                msgs["camera_info"].header.stamp = to_time(stamp - 0.45)
            for key in ("color", "depth", "camera_info", "label"):
                if key in msgs:
                    pubs[key].publish(msgs[key])
            if name.startswith("valid"):
                last_valid = stamp
            t = msgs["color"].header.stamp
            print(json.dumps({"case": name, "stamp": [t.sec, t.nanosec], "t": time.time()}), flush=True)
            time.sleep(period)


def main() -> int:
    cases = json.load(open(sys.argv[1]))
    rclpy.init()
    node = rclpy.create_node("case_publisher")
    pubs = synthetic.publishers(node, QoSProfile(depth=10))
    logs: list[str] = []
    pipeline: list[dict[str, str]] = []  # the node's pipeline status values, from the last publication on
    node.create_subscription(Log, "/rosout", lambda m: logs.append(m.msg), QoSProfile(depth=1000))
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: pipeline.extend(
        {kv.key: kv.value for kv in s.values} for s in m.status if s.name == PIPELINE), QoSProfile(depth=10))
    if not synthetic.wait_for_subscribers(node, pubs, timeout=90.0):
        print("no subscriber", flush=True)
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    listening = threading.Thread(target=executor.spin)  # the listeners above, while this thread publishes
    listening.start()
    try:
        sys.stdin.readline()
        time.sleep(0.3)  # the node's readers match these writers a moment after the writers see them: not observable here
        publish(node, pubs, cases, logs)
        del pipeline[:]
        idle = wait_for(lambda: len(pipeline) >= 2 and handled(pipeline[-1]) and handled(pipeline[-2])
                        and pipeline[-1]["sets received"] == pipeline[-2]["sets received"], IDLE_S)
        print("idle" if idle else f"not idle after {IDLE_S:g} s: {pipeline[-2:]}", flush=True)
    finally:
        executor.shutdown()
        listening.join()  # before the context goes: a thread still spinning then aborts the process
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if idle else 1


if __name__ == "__main__":
    sys.exit(main())
