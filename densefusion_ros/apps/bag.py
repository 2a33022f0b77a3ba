"""RGB-D sequences as rosbag2 (MCAP), written and read with the ``rosbags`` package (no ROS bag tooling needed).

The bundled demo sequence is made by :func:`write_sequence` from frames of the project's own
synthetic generator, on the realsense2_camera topic names (:mod:`densefusion_ros.ros.topics`), so
that ``ros2 bag record`` captures of a real camera replay the same way
(:mod:`densefusion_ros.apps.replay`). Ground truth, when known, rides along as
``vision_msgs/Detection3DArray`` on :data:`~densefusion_ros.ros.topics.GT_TOPIC`, built as the node
builds its detections (:func:`densefusion_ros.ros.outputs.detection`: class_id = object name, id
``<name>_<k>``, score = the visible share of the object). Messages are built with the ROS layer's
converters and serialized with rclpy; reading decodes with the ``rosbags`` type store
(:func:`densefusion_ros.ros.cdr.typestore`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import Frame
from densefusion_ros.ros.cdr import typestore
from densefusion_ros.ros.conversions import (
    camera_info_msg,
    camera_info_to_k,
    color_to_rgb,
    decode_compressed,
    depth_to_metres_msg,
    numpy_to_image,
    pixels_to_metres,
    pixels_to_rgb,
    pose_msg,
)
from densefusion_ros.ros.outputs import detection, object_id
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_OPTICAL_FRAME, COLOR_TOPIC, DEPTH_TOPIC, GT_TOPIC

COMPRESSED = "/compressed"  # image_transport's compressed plugin's topic suffix


def write_sequence(
    path: str | Path,
    frames: Iterable[Frame],
    catalog: Catalog | None = None,
    *,
    rate_hz: float | None = 30.0,
    frame_id: str = COLOR_OPTICAL_FRAME,
    compressed: bool = True,
    jpeg_quality: int = 92,
) -> int:
    """Write frames (colour rgb8, depth 16UC1 mm, camera_info, GT with a ``catalog``) to a rosbag2 (MCAP).

    Frame ``k`` is stamped ``k / rate_hz`` seconds; with ``rate_hz=None`` each frame's own
    :attr:`Frame.stamp` (e.g. a ``synth --sequence`` video's), which must increase.

    With ``compressed`` the images go as ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``
    (colour JPEG at ``jpeg_quality``, depth lossless 16-bit PNG), as image_transport's compressed
    plugin records them; the replay decodes them back to raw images on ``<topic>``. Otherwise raw
    images, each message zstd-compressed in the bag. Sizes: docs/node_internals.md, "Bag sizes".
    Returns the number of frames written.
    """
    store = typestore()
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    suffix = COMPRESSED if compressed else ""
    writer = Writer(Path(path), version=9, storage_plugin=StoragePlugin.MCAP)
    if not compressed:
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    count, last_ns = 0, -1
    with writer:
        conns = {
            topic: writer.add_connection(topic + sfx, msgtype, typestore=store)
            for topic, msgtype, sfx in (
                (COLOR_TOPIC, image_type, suffix), (DEPTH_TOPIC, image_type, suffix), (CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", "")
            )
        }
        if catalog is not None:
            conns[GT_TOPIC] = writer.add_connection(GT_TOPIC, "vision_msgs/msg/Detection3DArray", typestore=store)
        for k, frame in enumerate(frames):
            t_ns = int(round((k / rate_hz if rate_hz else frame.stamp) * 1e9))
            if t_ns <= last_ns:
                raise ValueError(f"frame {k}: stamp {t_ns * 1e-9:.6f} s does not follow {last_ns * 1e-9:.6f} s")
            last_ns = t_ns
            header = Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame_id)
            h, w = frame.depth_m.shape
            rgb = np.ascontiguousarray(frame.rgb, np.uint8)
            depth_mm = np.nan_to_num(np.round(frame.depth_m * 1000.0), nan=0, posinf=0, neginf=0).clip(0, 65535).astype("<u2")
            if compressed:
                jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1]
                png = cv2.imencode(".png", depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
                color = CompressedImage(header=header, format="rgb8; jpeg compressed bgr8", data=jpg.tobytes())
                depth = CompressedImage(header=header, format="16UC1; png compressed mono16", data=png.tobytes())
            else:
                color, depth = numpy_to_image(rgb, "rgb8", header), numpy_to_image(depth_mm, "16UC1", header)
            writer.write(conns[COLOR_TOPIC], t_ns, serialize_message(color))
            writer.write(conns[DEPTH_TOPIC], t_ns, serialize_message(depth))
            writer.write(conns[CAMERA_INFO_TOPIC], t_ns, serialize_message(camera_info_msg(frame.K, h, w, header)))
            if catalog is not None:
                writer.write(conns[GT_TOPIC], t_ns, serialize_message(gt_detections(header, frame, catalog)))
            count += 1
    return count


def gt_detections(header: Header, frame: Frame, catalog: Catalog) -> Detection3DArray:
    """The frame's ground truth as the node's detections: object ``k`` of a class gets id ``<name>_<k>``,
    its visible share as score; objects not in ``catalog`` are left out."""
    out = Detection3DArray(header=header)
    seen: dict[int, int] = {}
    for gt in frame.gt:
        info = catalog.by_class_id(gt.class_id)
        if info is None:
            continue
        k = seen[gt.class_id] = seen.get(gt.class_id, -1) + 1
        pose = pose_msg(gt.R, gt.t)
        out.detections.append(detection(header, object_id(info.name, k), info.name, gt.visib_fract, gt.R, gt.t, pose, info))
    return out


def read_sequence(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, bag_time_ns, raw CDR bytes)`` in time order (decompressed)."""
    with Reader(Path(path)) as reader:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:  # rosbags reads an empty selection as "every connection"
            return
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t_ns, bytes(raw)


def load_frames(path: str | Path) -> list[Frame]:
    """Decode a colour/depth/camera_info bag (raw or compressed images) into frames, in time order.

    Messages are grouped by bag time; a time without all three is left out; GT is not decoded here.
    Raises :class:`~densefusion_ros.ros.conversions.InputError` for an image or camera_info that
    cannot be read.
    """
    store = typestore()
    topics = (COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC, COLOR_TOPIC + COMPRESSED, DEPTH_TOPIC + COMPRESSED)
    by_time: dict[int, dict[str, object]] = {}
    for topic, msgtype, t_ns, raw in read_sequence(path, topics):
        msg = store.deserialize_cdr(raw, msgtype)
        if topic == CAMERA_INFO_TOPIC:
            value = camera_info_to_k(msg)
        elif topic.endswith(COMPRESSED):
            pixels, encoding = decode_compressed(msg.format, msg.data)
            value = pixels_to_rgb(pixels, encoding) if topic.startswith(COLOR_TOPIC) else pixels_to_metres(pixels)
        else:
            value = color_to_rgb(msg) if topic == COLOR_TOPIC else depth_to_metres_msg(msg)[0]
        base = topic.removesuffix(COMPRESSED)
        by_time.setdefault(t_ns, {})[base] = (value, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
    frames = []
    for t_ns in sorted(by_time):
        parts = by_time[t_ns]
        if {COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC} <= parts.keys():
            (rgb, stamp), (depth_m, _), (K, _) = parts[COLOR_TOPIC], parts[DEPTH_TOPIC], parts[CAMERA_INFO_TOPIC]
            frames.append(Frame(rgb=rgb, depth_m=depth_m, K=K, stamp=stamp))
    return frames


def main(argv: list[str] | None = None) -> int:
    """``python -m densefusion_ros.apps.bag --dataset D --split demo --out data/demo_sequence``."""
    import argparse

    from densefusion_ros.data.bop import BopDataset

    parser = argparse.ArgumentParser(description="Write a BOP split as a rosbag2 RGB-D sequence with ground truth.")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="demo")
    parser.add_argument("--catalog", default=None, help="default: DATASET/catalog.yaml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate", type=float, default=30.0,
                        help="frames per second; 0 = the frames' own stamps (one synth --sequence scene)")
    parser.add_argument("--max-frames", type=int, default=0)
    parser.add_argument("--jpeg-quality", type=int, default=92, help="of the colour images (depth is lossless PNG)")
    args = parser.parse_args(argv)
    dataset = BopDataset(args.dataset, split=args.split)
    index = dataset.index[: args.max_frames or None]
    catalog = Catalog.load(args.catalog or Path(args.dataset) / "catalog.yaml")
    count = write_sequence(args.out, (dataset.load_frame(s, i) for s, i in index), catalog, rate_hz=args.rate or None,
                           jpeg_quality=args.jpeg_quality)
    print(f"wrote {count} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
