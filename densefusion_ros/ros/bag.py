"""RGB-D sequences as rosbag2, written and read with the ``rosbags`` package (no ROS needed).

The bundled demo sequence is made by :func:`write_sequence` from frames of the project's own
synthetic generator, on the realsense2_camera topic names, so that ``ros2 bag record`` captures
of a real camera replay the same way (:mod:`densefusion_ros.ros.replay`). Ground truth, when
known, rides along as ``vision_msgs/Detection3DArray`` on :data:`GT_TOPIC` (class_id = object
name), registered from this repo's own ``interfaces/vision_msgs`` definitions.
This module imports no rclpy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import Frame
from densefusion_ros.geometry import matrix_to_quat
from densefusion_ros.resources import share_path

COLOR_TOPIC = "/camera/camera/color/image_raw"
DEPTH_TOPIC = "/camera/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/camera/color/camera_info"
GT_TOPIC = "/ground_truth/detections"
OPTICAL_FRAME = "camera_color_optical_frame"

_VISION_MSGS = ("Point2D", "Pose2D", "BoundingBox2D", "BoundingBox3D", "ObjectHypothesis",
                "ObjectHypothesisWithPose", "Detection3D", "Detection3DArray")


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted type store plus vision_msgs from ``interfaces/vision_msgs/msg`` (built once, shared)."""
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = share_path("interfaces", "vision_msgs", "msg")
    if msg_dir.is_dir():
        types = {}
        for name in _VISION_MSGS:
            types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"vision_msgs/msg/{name}"))
        store.register(types)
    return store


COMPRESSED = "/compressed"


def write_sequence(
    path: str | Path,
    frames: Iterable[Frame],
    catalog: Catalog | None = None,
    *,
    rate_hz: float | None = 30.0,
    frame_id: str = OPTICAL_FRAME,
    compressed: bool = True,
    jpeg_quality: int = 92,
) -> int:
    """Write frames (colour rgb8, depth 16UC1 mm, camera_info, optional GT) to a rosbag2 (MCAP).

    Frame ``k`` is stamped ``k / rate_hz`` seconds; with ``rate_hz=None`` each frame's own
    :attr:`Frame.stamp` (e.g. a ``synth --sequence`` video's), which must increase.

    With ``compressed`` the images go as ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``
    (colour JPEG, depth lossless 16-bit PNG), as image_transport's compressed plugin records them;
    the replay decodes them back to raw images on ``<topic>``. About 0.2 MB per 640x480 frame
    of synthetic data, most of it the noisy depth (~165 kB as PNG; colour ~50 kB at quality 92,
    ~23 kB at 80).
    """
    store = typestore()
    Img, CImg, Info, Hdr, Time = (store.types[n] for n in (
        "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo", "std_msgs/msg/Header",
        "builtin_interfaces/msg/Time"))
    image_type = CImg.__msgtype__ if compressed else Img.__msgtype__
    suffix = COMPRESSED if compressed else ""
    writer = Writer(Path(path), version=9, storage_plugin=StoragePlugin.MCAP)
    if not compressed:
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    count, last_ns = 0, -1
    with writer:
        conns = {
            t: writer.add_connection(t + sfx, m, typestore=store)
            for t, m, sfx in ((COLOR_TOPIC, image_type, suffix), (DEPTH_TOPIC, image_type, suffix), (INFO_TOPIC, Info.__msgtype__, ""))
        }
        if catalog is not None:
            conns[GT_TOPIC] = writer.add_connection(GT_TOPIC, "vision_msgs/msg/Detection3DArray", typestore=store)
        for k, frame in enumerate(frames):
            t_ns = int(round((k / rate_hz if rate_hz else frame.stamp) * 1e9))
            if t_ns <= last_ns:
                raise ValueError(f"frame {k}: stamp {t_ns * 1e-9:.6f} s does not follow {last_ns * 1e-9:.6f} s")
            last_ns = t_ns
            header = Hdr(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame_id)
            h, w = frame.depth_m.shape
            rgb = np.ascontiguousarray(frame.rgb, np.uint8)
            depth_mm = np.nan_to_num(np.round(frame.depth_m * 1000.0), nan=0, posinf=0, neginf=0).clip(0, 65535).astype("<u2")
            if compressed:
                jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1]
                png = cv2.imencode(".png", depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
                color = CImg(header=header, format="rgb8; jpeg compressed bgr8", data=jpg.reshape(-1))
                depth = CImg(header=header, format="16UC1; png compressed mono16", data=png.reshape(-1))
            else:
                color = Img(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=rgb.reshape(-1))
                depth = Img(header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2, data=depth_mm.view(np.uint8).reshape(-1))
            writer.write(conns[COLOR_TOPIC], t_ns, store.serialize_cdr(color, image_type))
            writer.write(conns[DEPTH_TOPIC], t_ns, store.serialize_cdr(depth, image_type))
            writer.write(conns[INFO_TOPIC], t_ns, store.serialize_cdr(_camera_info(store, header, frame.K, h, w), Info.__msgtype__))
            if catalog is not None:
                gt = _gt_detections(store, header, frame, catalog)
                writer.write(conns[GT_TOPIC], t_ns, store.serialize_cdr(gt, "vision_msgs/msg/Detection3DArray"))
            count += 1
    return count


def _camera_info(store, header, K: np.ndarray, h: int, w: int):
    Info = store.types["sensor_msgs/msg/CameraInfo"]
    Roi = store.types["sensor_msgs/msg/RegionOfInterest"]
    P = np.zeros((3, 4))
    P[:, :3] = K
    return Info(
        header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.asarray(K, np.float64).reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0, roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _gt_detections(store, header, frame: Frame, catalog: Catalog):
    T = store.types
    out = []
    for gt in frame.gt:
        info = catalog.by_class_id(gt.class_id)
        if info is None:
            continue
        w, x, y, z = matrix_to_quat(gt.R).tolist()
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=float(gt.t[0]), y=float(gt.t[1]), z=float(gt.t[2])),
            orientation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
        )
        hyp = T["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=T["vision_msgs/msg/ObjectHypothesis"](class_id=info.name, score=float(gt.visib_fract)),
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        )
        size = T["geometry_msgs/msg/Vector3"](x=float(info.extents[0]), y=float(info.extents[1]), z=float(info.extents[2]))
        bbox = T["vision_msgs/msg/BoundingBox3D"](center=pose, size=size)
        out.append(T["vision_msgs/msg/Detection3D"](header=header, results=[hyp], bbox=bbox, id=info.name))
    return T["vision_msgs/msg/Detection3DArray"](header=header, detections=out)


def decode_compressed(fmt: str, data: bytes) -> tuple[np.ndarray, str]:
    """Pixels and raw encoding of a CompressedImage (``"<encoding>; <codec> compressed ..."``)."""
    encoding = fmt.split(";")[0].strip() or "bgr8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode compressed image ({fmt!r})")
    if image.ndim == 3 and encoding.startswith("rgb"):
        image = image[..., ::-1]  # OpenCV decodes to BGR
    return np.ascontiguousarray(image), encoding


def read_sequence(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, bag_time_ns, raw CDR bytes)`` in time order (decompressed)."""
    with Reader(Path(path)) as reader:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t_ns, bytes(raw)


def load_frames(path: str | Path) -> list[Frame]:
    """Decode a colour/depth/camera_info bag (raw or compressed images) into frames, in time order.

    Messages are grouped by bag time; GT (when present) is not decoded here.
    """
    store = typestore()
    by_time: dict[int, dict[str, object]] = {}
    for topic, msgtype, t_ns, raw in read_sequence(path):
        msg = store.deserialize_cdr(raw, msgtype)
        base = topic[: -len(COMPRESSED)] if topic.endswith(COMPRESSED) else topic
        if msgtype == "sensor_msgs/msg/CompressedImage":
            pixels, encoding = decode_compressed(msg.format, bytes(msg.data))
        elif msgtype == "sensor_msgs/msg/Image" and msg.encoding in _RAW:
            pixels, encoding = _raw_pixels(msg), msg.encoding
        elif msgtype == "sensor_msgs/msg/CameraInfo":
            pixels, encoding = np.asarray(msg.k, np.float64).reshape(3, 3), "K"
        else:
            continue
        by_time.setdefault(t_ns, {})[base] = (pixels, encoding, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
    frames = []
    for t_ns in sorted(by_time):
        parts = by_time[t_ns]
        if not {COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC} <= parts.keys():
            continue
        (rgb, enc, stamp), (depth, _, _), (K, _, _) = parts[COLOR_TOPIC], parts[DEPTH_TOPIC], parts[INFO_TOPIC]
        if enc.startswith("bgr"):
            rgb = rgb[..., 2::-1]
        depth_m = depth.astype(np.float32) * (0.001 if depth.dtype == np.uint16 else 1.0)
        frames.append(Frame(rgb=np.ascontiguousarray(rgb[..., :3]), depth_m=depth_m, K=K, stamp=stamp))
    return frames


_RAW = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
        "mono8": (np.uint8, 1), "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1), "32FC1": (np.float32, 1)}


def _raw_pixels(msg) -> np.ndarray:
    """Pixels of a little-endian rosbags Image, honouring ``step``."""
    dtype, channels = _RAW[msg.encoding]
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype)
    return image.reshape(msg.height, msg.width, channels) if channels > 1 else image.reshape(msg.height, msg.width)


def main(argv: list[str] | None = None) -> int:
    """``python -m densefusion_ros.ros.bag --dataset D --split demo --out data/demo_sequence``."""
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
