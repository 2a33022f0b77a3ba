"""Synthetic input sets and random-weight models, for the node's tests, fuzzer and benchmarks.

Nothing here needs a dataset or trained weights: :func:`make_random_models` writes a one-object
catalog (a 10 x 6 x 4 cm box) and compact networks with random weights
(:mod:`tools.random_networks`); :func:`input_set` stamps a frame, usually
:func:`densefusion_ros.frame.box_frame`'s box in front of a wall, into colour (rgb8), depth
(16UC1 mm), camera_info and label (mono8) messages. The node then runs with ``label_topic`` set,
so that no segmenter is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from densefusion_ros.frame import Frame
from densefusion_ros.ros.conversions import camera_info_msg, numpy_to_image
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_OPTICAL_FRAME, COLOR_TOPIC, DEPTH_TOPIC

FRAME = COLOR_OPTICAL_FRAME  # the frame id of the input sets
TOPICS = {"color": COLOR_TOPIC, "depth": DEPTH_TOPIC, "camera_info": CAMERA_INFO_TOPIC, "label": "/test/label"}


def make_random_models(folder: str | Path, num_points: int = 100) -> dict[str, Path]:
    """Write ``catalog.yaml`` + ``box.obj``, ``est.pth`` and ``ref.pth`` (compact, random) to ``folder``."""
    import trimesh

    from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION
    from tools.random_networks import save_random_networks

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(0.10, 0.06, 0.04)).export(folder / "box.obj")
    (folder / "catalog.yaml").write_text("objects:\n  - {name: box, class_id: 1, index: 0, mesh: box.obj}\n")
    nets = save_random_networks(folder, 1, num_points=num_points, normalization=IMAGENET_NORMALIZATION, object_names=["box"])
    return {**nets, "catalog": folder / "catalog.yaml"}


def node_command(models: dict[str, Path], *params: str) -> list[str]:
    """``python`` arguments that start the node on ``models`` with the label topic; ``params`` are ``name:=value``.

    The node estimates every frame on its own (``mode:=detect``, ``icp:=none``) unless ``params`` say
    otherwise (a later ``-p`` wins): random networks on :func:`~densefusion_ros.frame.box_frame`'s flat patch give poses that
    the tracker's depth check rightly refuses, so in track mode nothing would be published.
    """
    args = ["-m", "densefusion_ros.ros.node", "--ros-args",
            "-p", f"estimator_weights:={models['estimator']}", "-p", f"refiner_weights:={models['refiner']}",
            "-p", f"catalog:={models['catalog']}", "-p", f"label_topic:={TOPICS['label']}", "-p", "seed:=0",
            "-p", "mode:=detect", "-p", "icp:=none"]
    for p in params:
        args += ["-p", p]
    return args


def input_set(frame: Frame, stamp: Time, frame_id: str = FRAME) -> dict[str, Image | CameraInfo]:
    """Colour, depth (mm), camera_info and label messages of ``frame`` (which needs a ``label``), each with
    a header of its own carrying ``stamp`` and ``frame_id``."""
    h, w = frame.depth_m.shape
    depth_mm = np.round(frame.depth_m * 1000).astype(np.uint16)
    return {
        "color": numpy_to_image(frame.rgb, "rgb8", Header(stamp=stamp, frame_id=frame_id)),
        "depth": numpy_to_image(depth_mm, "16UC1", Header(stamp=stamp, frame_id=frame_id)),
        "camera_info": camera_info_msg(frame.K, h, w, Header(stamp=stamp, frame_id=frame_id)),
        "label": numpy_to_image(frame.label, "mono8", Header(stamp=stamp, frame_id=frame_id)),
    }


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
