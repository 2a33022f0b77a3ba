"""The demo: replay the bundled RGB-D sequence through the node and print the poses.

Runs three processes on loopback-only DDS (``densefusion_ros.ros.env``): the replay publisher
(realsense2_camera topic names, the bundled 30 Hz video in a loop), ``densefusion_node`` with the
bundled weights (``mode: track``, a torch thread per core but one), and a listener that prints each frame's poses, rate, latency
and error against ground truth, and writes overlay images to ``--out``. The last line sums up:
frames processed and their rate, latency, the share of poses within 0.1 x diameter and the
wrong poses published (further off, or of an object not in view). Where ``ros2 launch``
exists, ``ros2 launch densefusion_ros demo.launch.py`` does the same.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from densefusion_ros.resources import share_path
from densefusion_ros.ros.env import local_ros_env

BUNDLED = ("models/estimator.pth", "models/refiner.pth", "models/segmenter.pth", "config/objects/demo.yaml", "data/demo_sequence/metadata.yaml")


def _forward(proc: subprocess.Popen, tag: str, ready: threading.Event | None = None) -> threading.Thread:
    def pump() -> None:
        for line in proc.stdout:
            print(f"[{tag}] {line}", end="", flush=True)
            if ready is not None and "ready:" in line:
                ready.set()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def node_threads() -> int:
    """Torch threads for the demo's node: one per core but one, which the replay and the listener
    share (on two cores a second torch thread spins waiting for a core: docs/performance.md, 'The demo')."""
    return max(1, (os.cpu_count() or 1) - 1)


def summary_line(s: dict) -> str:
    """The listener's summary in one line."""
    if not s.get("frames"):
        return "no frames processed"
    line = (f"{s['frames']} frames processed at {s['rate_hz']:.1f} Hz, latency p50 {s['latency_ms_p50']:.0f} / "
            f"p95 {s['latency_ms_p95']:.0f} ms; {s['poses']} poses ({s['ids']} ids)")
    if s.get("add_or_adds_below_0.1d") is not None:
        off = s["wrong_poses"] - s["not_in_view"]
        line += (f", {100 * s['add_or_adds_below_0.1d']:.1f} % within 0.1 x diameter, {s['wrong_poses']} wrong "
                 f"({off} > 0.1 d, {s['not_in_view']} of objects not in view), median ADD-S {s['median_adds_mm']:.1f} mm, "
                 f"{s['missed']} visible objects missed")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="overlay images, summary.json and replay_stamps.txt ('stamp frame_index' per frame sent) go here")
    parser.add_argument("--loops", type=int, default=5, help="times the sequence is replayed (64 frames, 2.1 s each)")
    parser.add_argument("--rate", type=float, default=0.0, help="replay rate, frames per second; 0 = the bag's own (30 Hz)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    missing = [p for p in BUNDLED if not share_path(p).exists()]
    if missing:
        print(f"demo: bundled files missing: {missing}", file=sys.stderr)
        return 1
    env = local_ros_env()
    print(f"demo: ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, discovery LOCALHOST, logs in {env['ROS_LOG_DIR']}", flush=True)
    py = sys.executable
    args.out.mkdir(parents=True, exist_ok=True)
    popen = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = subprocess.Popen(
        [py, "-m", "densefusion_ros.ros.node", "--ros-args", "--params-file", str(share_path("config", "densefusion.yaml")),
         "-p", f"device:={args.device}", "-p", "seed:=0", "-p", f"torch_threads:={node_threads()}"], **popen,
    )
    ready = threading.Event()
    threads = [_forward(node, "node", ready)]
    procs = [node]
    try:
        if not ready.wait(120):
            print("demo: the node did not become ready within 120 s", file=sys.stderr)
            return 1
        summary_path = args.out / "summary.json"
        listener = subprocess.Popen(
            [py, "-m", "densefusion_ros.apps.listener", "--overlay-dir", str(args.out / "overlays"), "--idle-exit", "4",
             "--summary", str(summary_path)], **popen,
        )
        procs.append(listener)
        threads.append(_forward(listener, "listener"))
        time.sleep(1.0)
        replay = subprocess.Popen([py, "-m", "densefusion_ros.apps.replay", "--loops", str(args.loops), "--rate", str(args.rate), "--pingpong",
                                   "--stamps-out", str(args.out / "replay_stamps.txt")], **popen)
        procs.append(replay)
        threads.append(_forward(replay, "replay"))
        replay.wait()
        listener.wait(timeout=60)
        for t in threads[1:]:
            t.join(timeout=2)
        summary = json.loads(summary_path.read_text())["summary"] if summary_path.exists() else {}
        print(f"demo: {summary_line(summary)}\ndemo: overlays in {args.out / 'overlays'}, per-frame results in {summary_path}", flush=True)
        return 0 if summary.get("frames", 0) > 0 else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
