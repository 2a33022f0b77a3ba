"""Soak benchmark: the node under a steady RGB-D stream for minutes; latency, rates, drops, memory.

    python -m tools.bench_soak --minutes 10 --rate 30           # 640x480 RGB-D at 30 Hz
    python -m tools.bench_soak --seconds 30 --json soak.json    # the size of the soak test

Three processes: the node (random-weight compact networks and the label topic unless
``--bundled``), a publisher process streaming a synthetic scene (colour rgb8, depth 16UC1 mm,
camera_info, label; stamped at publication) and this one, which records ``~/poses`` (latency =
arrival - image stamp), ``~/debug/processing_time_ms``, ``/diagnostics`` and the node's resident
memory (/proc, once a second). Statistics exclude the ``--warmup`` seconds. Memory growth compares
the median RSS of the last ``--window`` seconds with that of the first window after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc; psutil elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def publish(rate: float, width: int, height: int, seconds: float) -> int:
    """Stream the synthetic scene at ``rate`` Hz for ``seconds`` or until SIGINT/SIGTERM (run in its own process)."""
    import signal

    import rclpy
    from rclpy.qos import QoSProfile
    from rclpy.signals import SignalHandlerOptions

    from densefusion_ros.frame import box_frame
    from tools import synthetic

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    node = rclpy.create_node("soak_publisher")
    pubs = synthetic.publishers(node, QoSProfile(depth=2))
    synthetic.wait_for_subscribers(node, pubs, timeout=120.0)
    msgs = synthetic.input_set(box_frame(height, width), node.get_clock().now().to_msg())
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds and not stop:
        stamp = node.get_clock().now().to_msg()
        for name, msg in msgs.items():
            msg.header.stamp = stamp
            pubs[name].publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 2)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def node_process(args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen:
    from tools import synthetic

    params = ["overlay:=false", f"device:={args.device}", f"expected_input_hz:={args.rate}", f"torch_threads:={args.threads}"]
    if args.bundled:
        cmd = ["-m", "densefusion_ros.ros.node", "--ros-args", *sum((["-p", p] for p in params), [])]
    else:
        folder = Path(args.models or tempfile.mkdtemp(prefix="densefusion_soak_"))
        models = synthetic.make_random_models(folder) if not (folder / "est.pth").is_file() else {
            "estimator": folder / "est.pth", "refiner": folder / "ref.pth", "catalog": folder / "catalog.yaml"}
        cmd = synthetic.node_command(models, *params)
    return subprocess.Popen([sys.executable, *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(proc: subprocess.Popen, timeout: float = 180.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready:" in line:
            return lines
    raise RuntimeError("node did not start:\n" + "".join(lines))


def soak(args: argparse.Namespace) -> dict[str, Any]:
    import threading

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import QoSProfile
    from std_msgs.msg import Float64

    from densefusion_ros.ros.env import apply_local_ros_env
    from densefusion_ros.ros.sync import header_stamp

    domain = os.environ.get("ROS_DOMAIN_ID")  # keep a domain chosen by the caller (tests), always loopback
    apply_local_ros_env(domain_id=int(domain) if domain else None, log_dir=os.environ.get("ROS_LOG_DIR"))
    env = dict(os.environ)
    node = node_process(args, env)
    log = wait_ready(node)
    threading.Thread(target=lambda: log.extend(node.stdout), daemon=True).start()
    width, height = (int(v) for v in args.size.split("x"))
    duration = args.seconds or args.minutes * 60.0
    publisher = subprocess.Popen([sys.executable, "-m", "tools.bench_soak", "--publish", "--rate", str(args.rate),
                                  "--size", args.size, "--seconds", str(duration)], env=env, stdout=subprocess.PIPE, text=True)
    rclpy.init()
    mon = rclpy.create_node("soak_monitor")
    poses, processing, diag, rss = [], [], {}, []
    mon.create_subscription(PoseArray, "/densefusion/poses", lambda m: poses.append(
        (time.monotonic(), (mon.get_clock().now().nanoseconds * 1e-9 - header_stamp(m)) * 1e3)), QoSProfile(depth=100))
    mon.create_subscription(Float64, "/densefusion/debug/processing_time_ms",
                            lambda m: processing.append((time.monotonic(), m.data)), QoSProfile(depth=100))
    mon.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.update(
        {s.name.split(": ", 1)[-1]: {kv.key: kv.value for kv in s.values} for s in m.status}), QoSProfile(depth=10))
    start = time.monotonic()
    next_sample = start
    warm_diag: dict = {}
    while publisher.poll() is None:
        rclpy.spin_once(mon, timeout_sec=0.05)
        now = time.monotonic()
        if now >= next_sample:
            rss.append((now - start, rss_mb(node.pid)))
            next_sample += 1.0
        if not warm_diag and now - start >= args.warmup and "pipeline" in diag:
            warm_diag = {"t": now - start, **diag["pipeline"]}
    sent = json.loads(publisher.stdout.read().strip().splitlines()[-1])
    end = time.monotonic()
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        rclpy.spin_once(mon, timeout_sec=0.05)
    alive = node.poll() is None
    node.terminate()
    node.wait(timeout=10)
    mon.destroy_node()
    rclpy.try_shutdown()
    return summarize(args, start, end, sent, poses, processing, diag, warm_diag, rss, alive, "".join(log))


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def summarize(args, start, end, sent, poses, processing, diag, warm_diag, rss, alive, log) -> dict[str, Any]:
    t0 = start + args.warmup
    span = end - t0
    lat = [ms for t, ms in poses if t >= t0]
    proc = [ms for t, ms in processing if t >= t0]
    values = diag.get("pipeline", {})
    dropped = {k[len("dropped: "):]: int(v) for k, v in values.items() if k.startswith("dropped: ")}
    warm_dropped = {k[len("dropped: "):]: int(v) for k, v in warm_diag.items() if k.startswith("dropped: ")}
    steady = [(t, mb) for t, mb in rss if t >= args.warmup]
    first = [mb for t, mb in steady if t < args.warmup + args.window]
    last = [mb for t, mb in steady if t >= steady[-1][0] - args.window] if steady else []
    growth = (np.median(last) / np.median(first) - 1) * 100 if first and last else float("nan")
    received = int(values.get("sets received", 0)) - int(warm_diag.get("sets received", 0))
    return {
        "config": {"rate": args.rate, "size": args.size, "seconds": round(end - start, 1), "warmup": args.warmup,
                   "device": args.device, "threads": args.threads},
        "input Hz (published)": round(sent["sent"] / sent["seconds"], 2),
        "input Hz (sets received by the node, after warm-up)": round(received / span, 2) if span > 0 else None,
        "processed Hz (after warm-up)": round(len(lat) / span, 2) if span > 0 else None,
        "dropped (after warm-up)": {k: v - warm_dropped.get(k, 0) for k, v in dropped.items()},
        "dropped (total)": dropped,
        "latency ms (stamp -> pose received)": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
        "processing ms (node)": {"p50": _pct(proc, 50), "p95": _pct(proc, 95), "p99": _pct(proc, 99)},
        "latency p95 / processing p95": round(_pct(lat, 95) / _pct(proc, 95), 2) if proc else None,
        "rss MiB": {"after warm-up (median of first window)": round(float(np.median(first)), 1) if first else None,
                    "end (median of last window)": round(float(np.median(last)), 1) if last else None,
                    "max": round(max(mb for _, mb in rss), 1) if rss else None, "growth %": round(float(growth), 2),
                    "growth": round(float(np.median(last) - np.median(first)), 1) if first and last else None,
                    "frames processed after warm-up": len(lat),
                    "per minute": {f"{int(t // 60)}": round(mb, 1) for t, mb in rss if int(t) % 60 == 0}},
        "node alive": alive, "log Traceback": log.count("Traceback"), "log unexpected": log.count("unexpected"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=0.0, help="overrides --minutes")
    parser.add_argument("--rate", type=float, default=30.0, help="input sets per second")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the statistics")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per RSS window (growth = last vs first)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch_threads of the node (0 = torch's default)")
    parser.add_argument("--bundled", action="store_true", help="the node's bundled models and segmenter instead of random ones")
    parser.add_argument("--models", help="folder for / from synthetic.make_random_models")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)  # the publisher process
    args = parser.parse_args(argv)
    if args.publish:
        w, h = (int(v) for v in args.size.split("x"))
        return publish(args.rate, w, h, args.seconds)
    result = soak(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0 if result["node alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
