"""End-to-end benchmark of the node: latency, throughput and overhead against the bare pipeline.

In one run, on the same frames (the bundled sequence by default):
1. the pipeline is called directly on every frame (the reference time per frame);
2. ``densefusion_node`` runs in its own process while the replay streams the sequence at each
   input rate (15 and 30 Hz by default); this process subscribes to the node's detections and
   ``~/debug/processing_time_ms`` and measures latency (image stamp -> detections received) and
   output rate.
3. the pipeline is called directly again while the replay streams at each rate to a plain
   subscriber process that receives the three camera topics as the node would ("direct under
   the stream"): the camera driver's and the receiving's load on the machine, without the node.
The replay logs which frame of the sequence each stamp carries, so both sides are compared on
the frames the node processed (it drops the others: latest frame wins), as means.
Overhead = node processing time per frame (conversion + pipeline + messages) / direct pipeline
time - 1, against the idle direct time (before and after the node runs, averaged, since machine
load drifts) and against the direct time under the same stream (the like-for-like comparison on a
small machine, where the publisher and the receiving share the cores with the pipeline). The node
also reports its own pipeline time (``~/debug/pipeline_time_ms``), so the in-node share of
conversion and publishing is printed too. Both sides use the same torch thread count.

    python -m tools.bench_node --rates 15 30 --loops 3

Machine speed drifts within minutes on a shared machine (docs/performance.md); ``--blocks N``
alternates N streaming blocks with idle direct passes so that drift hits both sides alike.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import rclpy
import torch
from rclpy.executors import ExternalShutdownException
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float64
from vision_msgs.msg import Detection3DArray

from densefusion_ros.apps.bag import load_frames
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.resources import share_path
from densefusion_ros.ros.env import apply_local_ros_env
from densefusion_ros.ros.sync import header_stamp
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC


def bundled_pipeline(threads: int) -> Pipeline:
    torch.set_num_threads(threads)
    return Pipeline.from_checkpoints(
        share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"), PipelineConfig(seed=0),
        refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
    )


def direct_pipeline_ms(pipeline: Pipeline, frames: list, repeats: int, until=None) -> np.ndarray:
    """Median ms of ``pipeline`` on each of ``frames`` (``repeats`` passes, or until ``until()`` is true)."""
    pipeline(frames[0])  # warm-up
    times: list[list[float]] = [[] for _ in frames]
    for r in itertools.count():
        if (until is None and r >= repeats) or (until is not None and until()):
            break
        for k, frame in enumerate(frames):
            t0 = time.perf_counter()
            pipeline(frame)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return np.array([np.median(t) if t else np.nan for t in times])


def sink(topics: list[str]) -> None:
    """Receive the camera topics and drop them (the stream's load without the node)."""
    rclpy.init()
    node = rclpy.create_node("bench_stream_sink")
    types = {CAMERA_INFO_TOPIC: CameraInfo}
    for topic in topics:
        node.create_subscription(types.get(topic, Image), topic, lambda _msg: None, qos_profile_sensor_data)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def direct_under_stream(pipeline: Pipeline, frames: list, bag: str, rate: float, loops: int, env: dict) -> np.ndarray:
    """Direct pipeline ms per frame while the replay streams ``bag`` at ``rate`` to a subscriber process."""
    topics = [COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC]
    receiver = subprocess.Popen([sys.executable, "-m", "tools.bench_node", "--sink", *topics],
                                env=env, stdout=subprocess.PIPE, text=True)
    receiver.stdout.readline()
    replay = subprocess.Popen([sys.executable, "-m", "densefusion_ros.apps.replay", "--bag", bag, "--rate", str(rate), "--loops", str(loops)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # the replay's start-up and subscriber wait, as in the node run
        return direct_pipeline_ms(pipeline, frames, 0, until=lambda: replay.poll() is not None)
    finally:
        replay.wait(timeout=600)
        receiver.terminate()
        receiver.wait(timeout=10)


def measure_node(bag: str, rate: float, loops: int, threads: int, env: dict, params: list[str] = (), blocks: int = 1,
                 between=None) -> dict:
    """Run the node once and stream ``bag`` at ``rate`` to it ``blocks`` times (``loops`` each),
    calling ``between()`` after each block while the node idles."""
    extra = [a for p in params for a in ("-p", p)]
    node = subprocess.Popen(
        [sys.executable, "-m", "densefusion_ros.ros.node", "--ros-args", "-p", "seed:=0", "-p", "overlay:=false", "-p", "device:=cpu",
         "-p", f"torch_threads:={threads}", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in node.stdout:
        if "ready:" in line:
            break
    sub = rclpy.create_node(f"bench_node_{int(rate)}")
    latencies, arrivals, processing, in_node, stamps, index, spans = [], [], [], [], [], {}, []

    def on_det(msg: Detection3DArray) -> None:
        latencies.append((sub.get_clock().now().nanoseconds * 1e-9 - header_stamp(msg)) * 1e3)
        arrivals.append(time.monotonic())
        stamps.append((msg.header.stamp.sec, msg.header.stamp.nanosec))

    sub.create_subscription(Detection3DArray, "/densefusion/detections", on_det, 50)
    sub.create_subscription(Float64, "/densefusion/debug/processing_time_ms", lambda m: processing.append(m.data), 50)
    sub.create_subscription(Float64, "/densefusion/debug/pipeline_time_ms", lambda m: in_node.append(m.data), 50)
    for _ in range(blocks):
        first = len(arrivals)
        with tempfile.NamedTemporaryFile("r", suffix=".txt") as stamps_file:
            replay = subprocess.Popen([sys.executable, "-m", "densefusion_ros.apps.replay", "--bag", bag, "--rate", str(rate), "--loops",
                                       str(loops), "--stamps-out", stamps_file.name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sent_start = time.monotonic()
            while replay.poll() is None or time.monotonic() - (arrivals[-1] if len(arrivals) > first else sent_start) < 2.0:
                rclpy.spin_once(sub, timeout_sec=0.05)
                if time.monotonic() - sent_start > 600:
                    break
            for line in stamps_file:
                sec, nsec_k = line.split(".")
                nsec, k = nsec_k.split()
                index[(int(sec), int(nsec))] = int(k)
        if len(arrivals) - first > 1:
            spans.append((len(arrivals) - first - 1, arrivals[-1] - arrivals[first]))
        if between is not None:
            between()
    node.terminate()
    node.wait(timeout=10)
    sub.destroy_node()
    # one processing and one pipeline time per published detections message, in the same order
    n = min(len(stamps), len(processing), len(in_node))
    out_frames, span = sum(c for c, _ in spans), sum(t for _, t in spans)
    lat = np.array(latencies or [np.nan])
    return {
        "rate_in": rate, "frames_out": len(arrivals), "rate_out": out_frames / span if span > 0 else 0.0,
        "latency_p50": float(np.percentile(lat, 50)), "latency_p95": float(np.percentile(lat, 95)),
        "frames": [index[st] for st in stamps[:n]], "processing_ms": np.array(processing[:n]), "pipeline_ms": np.array(in_node[:n]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", default=str(share_path("data", "demo_sequence")))
    parser.add_argument("--rates", type=float, nargs="+", default=[15.0, 30.0])
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both the direct run and the node")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=1,
                        help="> 1: alternate this many streaming blocks with idle direct runs (one pass each), so that "
                             "machine-speed drift hits both sides alike; the overhead is then against these direct runs")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter (repeatable)")
    parser.add_argument("--sink", nargs="+", metavar="TOPIC", help=argparse.SUPPRESS)  # internal: the stream's receiver
    args = parser.parse_args(argv)
    apply_local_ros_env()
    if args.sink:
        sink(args.sink)
        return 0
    env = dict(os.environ)
    pipeline, frames = bundled_pipeline(args.threads), load_frames(args.bag)
    before = direct_pipeline_ms(pipeline, frames, args.repeats)
    interleaved: dict[float, list] = {r: [] for r in args.rates}
    rclpy.init()
    try:
        rows = [
            measure_node(args.bag, r, args.loops, args.threads, env, args.param, args.blocks,
                         (lambda r=r: interleaved[r].append(direct_pipeline_ms(pipeline, frames, 1))) if args.blocks > 1 else None)
            for r in args.rates
        ]  # fmt: skip
    finally:
        rclpy.try_shutdown()
    loaded = {r: direct_under_stream(pipeline, frames, args.bag, r, args.loops, env) for r in args.rates}
    after = direct_pipeline_ms(pipeline, frames, args.repeats)
    idle = {r: np.mean(interleaved[r], axis=0) if interleaved[r] else (before + after) / 2 for r in args.rates}
    print(f"direct pipeline, idle: {np.mean((before + after) / 2):.1f} ms per frame of the sequence (mean of per-frame medians, "
          f"{args.threads} thread(s); {np.mean(before):.1f} before, {np.mean(after):.1f} after the node runs)")
    if args.blocks > 1:
        print(f"interleaved: {args.blocks} blocks of {args.loops} loops per rate, each followed by one idle direct pass; "
              "overhead vs idle direct is against those passes: "
              + ", ".join(f"{np.mean(idle[r]):.1f} ms at {r:g} Hz" for r in args.rates))
    print("Means over the frames the node processed; the direct times are of the same frames.")
    print("| input Hz | output Hz | frames out | latency p50 ms | latency p95 ms | node ms/frame | in-node pipeline ms "
          "| direct under the stream ms | overhead vs direct under the stream | overhead vs idle direct |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        k = np.array(r["frames"], dtype=int)
        node_ms, same_load, idle_ms = r["processing_ms"].mean(), loaded[r["rate_in"]][k].mean(), idle[r["rate_in"]][k].mean()
        print(f"| {r['rate_in']:.0f} | {r['rate_out']:.1f} | {r['frames_out']} | {r['latency_p50']:.0f} | {r['latency_p95']:.0f} | "
              f"{node_ms:.1f} | {r['pipeline_ms'].mean():.1f} | {same_load:.1f} | "
              f"{(node_ms / same_load - 1) * 100:+.1f} % | {(node_ms / idle_ms - 1) * 100:+.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
