"""Print each frame's poses from the node, the output rate, the latency and the error against GT.

Subscribes to the node's ``~/detections`` and, when the replayed bag carries it, to the ground
truth on :data:`~densefusion_ros.ros.topics.GT_TOPIC`; matches them by stamp (the replay gives every
published frame a fresh stamp, shared by its images and GT, so the match holds across loops). A
pose is *ok* when its ADD(-S) is below 0.1 x the object's diameter, *wrong* when it is not or when
the frame's GT has no such object (not in view); a GT object at least 10 % visible without a pose
is *missed*. With ``--overlay-dir`` it also subscribes to ``~/overlay`` and writes the images as PNG.

    python -m densefusion_ros.apps.listener --catalog config/objects/demo.yaml --duration 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection3DArray

from densefusion_ros.catalog import Catalog
from densefusion_ros.eval.metrics import add, adds
from densefusion_ros.geometry import quat_to_matrix, xyzw_to_wxyz
from densefusion_ros.resources import share_path
from densefusion_ros.ros.conversions import color_to_rgb
from densefusion_ros.ros.sync import header_stamp
from densefusion_ros.ros.topics import GT_TOPIC

MIN_VISIBLE = 0.1  # a GT object less visible than this (visible share of its silhouette) is not missed without a pose


def _pose(p) -> tuple[np.ndarray, np.ndarray]:
    q = xyzw_to_wxyz(np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]))
    return quat_to_matrix(q), np.array([p.position.x, p.position.y, p.position.z])


class Listener(Node):
    """Collects per-frame results; see the module docstring."""

    def __init__(self, catalog: Catalog, detections_topic: str, overlay_topic: str, overlay_dir: Path | None, quiet: bool):
        super().__init__("densefusion_listener")
        self.catalog, self.overlay_dir, self.quiet = catalog, overlay_dir, quiet
        self.gt: dict[int, Detection3DArray] = {}
        self.rows: list[dict] = []
        self.arrivals: list[float] = []
        self.overlays = 0
        qos = QoSProfile(depth=20)
        self.create_subscription(Detection3DArray, detections_topic, self._on_detections, qos)
        self.create_subscription(Detection3DArray, GT_TOPIC, self._on_gt, qos)
        if overlay_dir is not None:
            overlay_dir.mkdir(parents=True, exist_ok=True)
            self.create_subscription(Image, overlay_topic, self._on_overlay, 2)

    def _on_gt(self, msg: Detection3DArray) -> None:
        self.gt[_key(msg)] = msg
        if len(self.gt) > 300:
            self.gt.pop(next(iter(self.gt)))

    def _on_detections(self, msg: Detection3DArray) -> None:
        """GT is published with the images, so it is here before the node's answer."""
        latency = self.get_clock().now().nanoseconds * 1e-9 - header_stamp(msg)
        self.arrivals.append(time.monotonic())
        self._report(msg, latency, self.gt.get(_key(msg)))

    def _report(self, msg: Detection3DArray, latency: float, gt: Detection3DArray | None) -> None:
        row = {"stamp": header_stamp(msg), "latency_ms": latency * 1e3, "objects": []}
        gts = {d.results[0].hypothesis.class_id: d for d in gt.detections} if gt is not None else {}
        for det in msg.detections:
            hyp = det.results[0]
            name = hyp.hypothesis.class_id
            obj = {"id": det.id, "name": name, "score": round(hyp.hypothesis.score, 3),
                   "t": [round(v, 4) for v in (hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z)]}
            info = self.catalog.by_name(name) if name in self.catalog.names else None
            if gt is not None and name not in gts:
                obj["ok"], obj["not_in_view"] = False, True
            elif name in gts and info is not None:
                R, t = _pose(hyp.pose.pose)
                Rg, tg = _pose(gts[name].results[0].pose.pose)
                pts = info.sample_points(500)
                err_s = adds(R, t, Rg, tg, pts)
                err = err_s if info.symmetric else add(R, t, Rg, tg, pts)
                obj["adds_mm"] = round(err_s * 1e3, 1)
                if not info.symmetric:
                    obj["add_mm"] = round(err * 1e3, 1)
                obj["dt_mm"] = round(float(np.linalg.norm(t - tg)) * 1e3, 1)
                obj["ok"] = bool(err < 0.1 * info.diameter)
            row["objects"].append(obj)
        visible = {n for n, d in gts.items() if d.results[0].hypothesis.score >= MIN_VISIBLE}  # GT score = visible share
        row["missed"] = sorted(visible - {d.results[0].hypothesis.class_id for d in msg.detections})
        self.rows.append(row)
        if not self.quiet:
            parts = [f"{o['id']} conf {o['score']:.2f} t={o['t']}" + _verdict(o) for o in row["objects"]]
            found = "; ".join(parts) or "nothing found"
            print(f"[{len(self.rows):4d}] latency {row['latency_ms']:6.1f} ms | rate {self.rate():4.1f} Hz | {found}", flush=True)

    def _on_overlay(self, msg: Image) -> None:
        self.overlays += 1
        cv2.imwrite(str(self.overlay_dir / f"overlay_{self.overlays:04d}.png"), color_to_rgb(msg)[..., ::-1])

    def rate(self) -> float:
        recent = [t for t in self.arrivals if self.arrivals[-1] - t <= 2.0]
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6) if len(recent) > 1 else 0.0

    def summary(self) -> dict:
        lat = np.array([r["latency_ms"] for r in self.rows]) if self.rows else np.zeros(1)
        verdicts = [o["ok"] for r in self.rows for o in r["objects"] if "ok" in o]  # poses of frames with GT
        judged = [o for r in self.rows for o in r["objects"] if "adds_mm" in o]  # ... of an object in view
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0.0
        return {
            "frames": len(self.rows),
            "rate_hz": round((len(self.arrivals) - 1) / span, 2) if span > 0 else 0.0,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
            "poses": sum(len(r["objects"]) for r in self.rows),
            "poses_with_gt": len(judged),
            "add_or_adds_below_0.1d": round(sum(verdicts) / len(verdicts), 3) if verdicts else None,
            "median_add_or_adds_mm": float(np.median([o.get("add_mm", o["adds_mm"]) for o in judged])) if judged else None,
            "median_adds_mm": float(np.median([o["adds_mm"] for o in judged])) if judged else None,
            "median_translation_error_mm": float(np.median([o["dt_mm"] for o in judged])) if judged else None,
            "wrong_poses": len(verdicts) - sum(verdicts),
            "not_in_view": sum(o.get("not_in_view", False) for r in self.rows for o in r["objects"]),
            "missed": sum(len(r["missed"]) for r in self.rows),
            "ids": len({o["id"] for r in self.rows for o in r["objects"]}),
            "overlays_written": self.overlays,
        }


def _verdict(o: dict) -> str:
    if o.get("not_in_view"):
        return " not in view: wrong"
    if "adds_mm" not in o:
        return ""
    return f" ADD(-S) {o.get('add_mm', o['adds_mm'])} mm ADD-S {o['adds_mm']} mm {'ok' if o['ok'] else 'wrong'}"


def _key(msg: Detection3DArray) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=str(share_path("config", "objects", "demo.yaml")))
    parser.add_argument("--detections", default="/densefusion/detections")
    parser.add_argument("--overlay", default="/densefusion/overlay")
    parser.add_argument("--overlay-dir", type=Path, help="write overlay PNGs here (subscribes to the overlay)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames")
    parser.add_argument("--idle-exit", type=float, default=0.0, help="stop after this many seconds without output once some arrived")
    parser.add_argument("--summary", type=Path, help="write the summary (and rows) as JSON here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(rclpy.utilities.remove_ros_args(sys.argv if argv is None else argv)[1:])
    rclpy.init(args=sys.argv if argv is None else argv)
    node = Listener(Catalog.load(args.catalog), args.detections, args.overlay, args.overlay_dir, args.quiet)
    start = time.monotonic()
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
            now = time.monotonic()
            if args.duration and now - start > args.duration:
                break
            if args.frames and len(node.rows) >= args.frames:
                break
            if args.idle_exit and node.arrivals and now - node.arrivals[-1] > args.idle_exit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        summary = node.summary()
        print("summary: " + json.dumps(summary), flush=True)
        if args.summary:
            args.summary.write_text(json.dumps({"summary": summary, "frames": node.rows}, indent=1))
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
