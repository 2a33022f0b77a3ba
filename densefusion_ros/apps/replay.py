"""Replay an RGB-D rosbag2 on its recorded topics at camera rate, restamped to now.

``--keep-stamps`` publishes the recorded stamps instead (as ``ros2 bag play`` does), and
``--clock`` also publishes each frame's recorded stamp on ``/clock``, for a node started with
``use_sim_time``.

Works for the bundled synthetic sequence and for ``ros2 bag record`` captures of a RealSense
(raw ``sensor_msgs/Image`` + ``CameraInfo``); reads with ``rosbags``, so no ROS bag tooling is
needed. All messages recorded at the same bag time get the same new stamp, which keeps colour,
depth, camera_info and ground truth in step for the synchroniser and the listener. Frames go out
in bag order; each loop starts again at the first frame, with new stamps (for a tracker, the
scene jumps back), or with ``--pingpong`` every other loop plays the frames backwards, so the
scene moves on without a jump.

    python -m densefusion_ros.apps.replay --bag data/demo_sequence --rate 30 --loops 2
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock

from densefusion_ros.apps.bag import COMPRESSED, read_sequence
from densefusion_ros.resources import share_path
from densefusion_ros.ros.conversions import compressed_to_image


def message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _restamp(msg: Any, stamp) -> None:
    if hasattr(msg, "header"):
        msg.header.stamp = stamp
    for det in getattr(msg, "detections", []):
        det.header.stamp = stamp


def decode_message(topic: str, msgtype: str, raw: bytes) -> tuple[str, Any]:
    """The topic and rclpy message of a bag record; a CompressedImage on ``<topic>/compressed``
    becomes a raw Image on ``<topic>``."""
    msg = deserialize_message(raw, message_class(msgtype))
    if msgtype == "sensor_msgs/msg/CompressedImage" and topic.endswith(COMPRESSED):
        return topic.removesuffix(COMPRESSED), compressed_to_image(msg)
    return topic, msg


class Replay(Node):
    """Publishes a bag's messages on their topics."""

    def __init__(self, bag: str, rate_hz: float, loops: int, topics: list[str] | None, wait_s: float = 5.0,
                 stamps_out: str | None = None, pingpong: bool = False, keep_stamps: bool = False, clock: bool = False) -> None:
        super().__init__("densefusion_replay")
        self.bag, self.rate_hz, self.loops, self.topics, self.wait_s = bag, rate_hz, loops, topics, wait_s
        self.stamps_out, self.pingpong, self.keep_stamps = stamps_out, pingpong, keep_stamps or clock
        self._pubs: dict[str, Any] = {}
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10)) if clock else None

    def _wait_for_subscribers(self) -> None:
        """Give discovery time to match the subscribers, so the first frames are not lost."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in self._pubs.values()):
            time.sleep(0.05)
        time.sleep(0.2)

    def run(self) -> int:
        messages = [(t, *decode_message(topic, msgtype, raw)) for topic, msgtype, t, raw in read_sequence(self.bag, self.topics)]
        if not messages:
            self.get_logger().error(f"{self.bag}: no messages")
            return 1
        for _, topic, msg in messages:
            if topic not in self._pubs:
                self._pubs[topic] = self.create_publisher(type(msg), topic, QoSProfile(depth=5))
        times = sorted({t for t, _, _ in messages})
        if self.rate_hz > 0:
            offsets = [k / self.rate_hz for k in range(len(times))]
        else:  # the bag's own timing
            offsets = [(t - times[0]) / 1e9 for t in times]
        span = offsets[-1] + (offsets[1] - offsets[0] if len(offsets) > 1 else 1.0 / 30)
        self.get_logger().info(f"replaying {self.bag}: {len(times)} frames x {self.loops} loops, topics {sorted(self._pubs)}")
        self._wait_for_subscribers()
        sent = 0
        start = time.monotonic()
        log = open(self.stamps_out, "w") if self.stamps_out else None  # noqa: SIM115 - closed below
        try:
            for loop in range(self.loops):
                backwards = self.pingpong and loop % 2 == 1
                for j, k in enumerate(range(len(times) - 1, -1, -1) if backwards else range(len(times))):
                    t = times[k]
                    due = start + loop * span + offsets[j]
                    time.sleep(max(0.0, due - time.monotonic()))
                    frame = [(topic, msg) for tt, topic, msg in messages if tt == t]
                    if self.keep_stamps:
                        stamp = next(msg.header.stamp for _, msg in frame if hasattr(msg, "header"))
                    else:
                        stamp = self.get_clock().now().to_msg()
                        for _, msg in frame:
                            _restamp(msg, stamp)
                    if self._clock_pub is not None:
                        self._clock_pub.publish(Clock(clock=stamp))
                    for topic, msg in frame:
                        self._pubs[topic].publish(msg)
                    if log is not None:
                        log.write(f"{stamp.sec}.{stamp.nanosec:09d} {k}\n")
                    sent += 1
                    if not rclpy.ok():
                        return 0
        finally:
            if log is not None:
                log.close()
        self.get_logger().info(f"replay done: {sent} frames in {time.monotonic() - start:.1f} s")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", default=str(share_path("data", "demo_sequence")), help="rosbag2 folder (default: the bundled sequence)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second; 0 = the bag's own timing")
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--pingpong", action="store_true", help="every other loop backwards: no jump between loops")
    parser.add_argument("--topics", nargs="*", help="topics to publish (default: all)")
    parser.add_argument("--wait-for-subscribers", type=float, default=5.0, metavar="S",
                        help="wait up to S seconds until every topic has a subscriber before the first frame")
    parser.add_argument("--stamps-out", metavar="FILE", help="write 'stamp frame_index' per published frame (for benchmarks)")
    parser.add_argument("--keep-stamps", action="store_true", help="publish the recorded stamps, as ros2 bag play does")
    parser.add_argument("--clock", action="store_true", help="publish the recorded stamps and each frame's on /clock")
    args = parser.parse_args(rclpy.utilities.remove_ros_args(sys.argv if argv is None else argv)[1:])
    if args.pingpong and (args.keep_stamps or args.clock):
        parser.error("--pingpong plays frames backwards: only with new stamps (not with --keep-stamps or --clock)")
    rclpy.init(args=sys.argv if argv is None else argv)
    node = Replay(args.bag, args.rate, args.loops, args.topics, args.wait_for_subscribers, args.stamps_out, args.pingpong,
                  args.keep_stamps, args.clock)
    try:
        return node.run()
    except KeyboardInterrupt:
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
