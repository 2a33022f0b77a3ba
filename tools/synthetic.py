"""Synthetic input sets and random-weight networks, for the node's tests, fuzzer and benchmarks.

Nothing here needs a dataset or trained weights: :func:`make_random_models` writes a one-object
catalog (a 10 x 6 x 4 cm box) and compact networks with random weights; :func:`scene` draws a
box-shaped patch 5 cm in front of a wall at 0.6 m, with its label; :func:`input_set` stamps it
into colour (rgb8), depth (16UC1 mm), camera_info and label (mono8) messages. The node then
runs with ``label_topic`` set, so that no segmenter is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image

from densefusion_ros.ros.conversions import numpy_to_image

FRAME = "camera_color_optical_frame"
TOPICS = {
    "color": "/camera/camera/color/image_raw",
    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
    "camera_info": "/camera/camera/color/camera_info",
    "label": "/test/label",
}


def make_random_models(folder: str | Path, num_points: int = 100) -> dict[str, Path]:
    """Write ``catalog.yaml`` + ``box.obj``, ``est.pth`` and ``ref.pth`` (compact, random) to ``folder``."""
    import torch
    import trimesh

    from densefusion_ros.models import build_estimator, build_refiner, save_checkpoint
    from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(0.10, 0.06, 0.04)).export(folder / "box.obj")
    (folder / "catalog.yaml").write_text("objects:\n  - {name: box, class_id: 1, index: 0, mesh: box.obj}\n")
    torch.manual_seed(0)
    meta = dict(num_points=num_points, object_names=["box"], normalization=IMAGENET_NORMALIZATION)
    save_checkpoint(folder / "est.pth", build_estimator(num_objects=1, backbone="compact"), kind="estimator", **meta)
    save_checkpoint(folder / "ref.pth", build_refiner(num_objects=1), kind="refiner", **meta)
    return {"estimator": folder / "est.pth", "refiner": folder / "ref.pth", "catalog": folder / "catalog.yaml"}


def node_command(models: dict[str, Path], *params: str) -> list[str]:
    """``python`` arguments that start the node on ``models`` with the label topic; ``params`` are ``name:=value``.

    The node estimates every frame on its own (``mode:=detect``, ``icp:=none``) unless ``params`` say
    otherwise (a later ``-p`` wins): random networks on :func:`scene`'s flat patch give poses that
    the tracker's depth check rightly refuses, so in track mode nothing would be published.
    """
    args = ["-m", "densefusion_ros.ros.node", "--ros-args",
            "-p", f"estimator_weights:={models['estimator']}", "-p", f"refiner_weights:={models['refiner']}",
            "-p", f"catalog:={models['catalog']}", "-p", f"label_topic:={TOPICS['label']}", "-p", "seed:=0",
            "-p", "mode:=detect", "-p", "icp:=none"]
    for p in params:
        args += ["-p", p]
    return args


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_mm: np.ndarray  # (H, W) uint16
    label: np.ndarray  # (H, W) uint8, class 1 = the box
    K: np.ndarray  # (3, 3)


def scene(height: int = 120, width: int = 160, seed: int = 0, with_object: bool = True) -> Scene:
    """A wall at 0.6 m with (optionally) a box patch at 0.55 m covering the middle third."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    depth = np.full((height, width), 600, np.uint16)
    label = np.zeros((height, width), np.uint8)
    if with_object:
        rows, cols = slice(height // 3, 2 * height // 3), slice(width // 3, 2 * width // 3)
        label[rows, cols] = 1
        depth[rows, cols] = 550
    f = 0.94 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return Scene(rgb, depth, label, K)


def camera_info(K: np.ndarray, height: int, width: int) -> CameraInfo:
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob")
    info.k = [float(v) for v in np.asarray(K).reshape(-1)]
    info.d = [0.0] * 5
    return info


def input_set(s: Scene, stamp: Time, frame_id: str = FRAME) -> dict[str, Image | CameraInfo]:
    """Colour, depth, camera_info and label messages of ``s``, all with ``stamp`` and ``frame_id``."""
    h, w = s.depth_mm.shape
    msgs = {
        "color": numpy_to_image(s.rgb, "rgb8"),
        "depth": numpy_to_image(s.depth_mm, "16UC1"),
        "camera_info": camera_info(s.K, h, w),
        "label": numpy_to_image(s.label, "mono8"),
    }
    for msg in msgs.values():
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
    return msgs


def padded(msg: Image, pad: int) -> Image:
    """The same image with ``pad`` extra bytes at the end of every row (a valid, larger ``step``)."""
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    out = Image(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding, is_bigendian=msg.is_bigendian,
                step=msg.step + pad)
    out.data = np.concatenate([rows, np.full((msg.height, pad), 0xAB, np.uint8)], axis=1).tobytes()
    return out


def publishers(node, qos) -> dict:
    """One publisher per input topic of :data:`TOPICS` on ``node``."""
    return {name: node.create_publisher(CameraInfo if name == "camera_info" else Image, topic, qos) for name, topic in TOPICS.items()}


def wait_for_subscribers(node, pubs: dict, names=("color", "depth", "camera_info", "label"), timeout: float = 30.0) -> bool:
    """Spin ``node`` until every publisher in ``names`` has a subscriber (the node's, once discovered)."""
    import time

    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(pubs[n].get_subscription_count() > 0 for n in names):
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return False
