"""Conversions between ROS messages and the core's numpy types.

Conventions at this boundary:
    * ROS quaternions are ``[x, y, z, w]``; the core's are ``[w, x, y, z]``
      (:func:`densefusion_ros.geometry.wxyz_to_xyzw`).
    * Poses are object-to-camera in the camera optical frame of the colour image, metres.
    * Depth: ``16UC1``/``mono16`` in millimetres, ``32FC1`` in metres.

The decoders read rclpy messages and the ``rosbags`` ones decoded with
:func:`~densefusion_ros.ros.cdr.typestore` alike (same field names; ``data`` a numpy array).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os

import cv2
import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from densefusion_ros.frame import depth_to_metres
from densefusion_ros.geometry import matrix_to_quat, wxyz_to_xyzw

log = logging.getLogger(__name__)


def use_system_module(module: str) -> bool:
    """Whether the ROS install's ``module`` can be used: present, importable, and not overridden by
    DENSEFUSION_ROS_BUILTIN_COMPAT=1. A module that is installed but fails to import (an apt
    cv_bridge built against numpy 1.x under numpy 2) is not used, with one warning naming why."""
    if os.environ.get("DENSEFUSION_ROS_BUILTIN_COMPAT") == "1" or importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - a broken system module must not stop the node: the in-package one works
        log.warning("%s is installed but does not import (%s: %s): using the in-package equivalent", module, type(e).__name__, e)
        return False
    return True


HAVE_CV_BRIDGE = use_system_module("cv_bridge")


class InputError(ValueError):
    """An input message that cannot be used; ``reason`` is a short key (for drop counters), the text says why."""

    def __init__(self, text: str, reason: str = "format"):
        super().__init__(text)
        self.reason = reason


class ImageConversionError(InputError):
    """An Image message that cannot be read as the expected kind of image; the text says why."""


# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")


def check_image(msg: Image, encodings: tuple[str, ...] | None = None, *, max_pixels: int = 4096 * 4096,
                role: str = "image") -> None:
    """Raise :class:`ImageConversionError` unless ``msg``'s header fields describe a readable image.

    Reads no pixel, so it costs the same for every size: the encoding (one of ``encodings``, by
    default any known one), non-zero width and height, at most ``max_pixels`` pixels, ``step`` at
    least one row of pixels, and ``len(data) == step * height`` as sensor_msgs/Image defines it.
    ``role`` names the image in the text ("colour", "depth", ...).
    """
    enc = msg.encoding
    allowed = ENCODINGS if encodings is None else encodings
    if enc not in allowed:
        raise ImageConversionError(f"{role} image has encoding {enc[:40]!r}, expected one of {', '.join(allowed)}", "encoding")
    dtype, channels = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"{role} image is empty ({w}x{h})", "empty")
    if h * w > max_pixels:
        raise ImageConversionError(f"{role} image {w}x{h} has more than max_pixels={max_pixels} pixels", "too large")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"{role} image step {step} is less than one row ({w} px x {channels * dtype.itemsize} bytes "
                                   f"= {row_bytes}) for {enc}", "step")
    size = len(msg.data)
    if size != step * h:
        raise ImageConversionError(f"{role} image data has {size} bytes but {enc} {w}x{h} with step {step} needs "
                                   f"step*height = {step * h}", "data size")


def image_to_numpy(msg: Image, *, max_pixels: int = 4096 * 4096, encodings: tuple[str, ...] | None = None,
                   role: str = "image") -> np.ndarray:
    """The pixels of ``msg`` as ``(H, W)`` or ``(H, W, C)`` in the message's own encoding.

    Checks the message with :func:`check_image` first, then honours ``step`` (row padding) and
    ``is_bigendian``. Raises :class:`ImageConversionError` for anything unreadable.
    """
    check_image(msg, encodings, max_pixels=max_pixels, role=role)
    dtype, channels = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if HAVE_CV_BRIDGE and isinstance(msg, Image):  # cv_bridge reads rclpy messages only (not raw-decoded ones)
        from cv_bridge import CvBridge, CvBridgeError

        try:
            return np.asarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        except (CvBridgeError, TypeError, ValueError) as e:
            raise ImageConversionError(f"{role} image: {e}") from e
    row_bytes = w * channels * dtype.itemsize
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=step * h).reshape(h, step)[:, :row_bytes]
    out = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if msg.is_bigendian else "<"))
    return out.astype(dtype, copy=False).reshape((h, w, channels) if channels > 1 else (h, w))


def pixels_to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from ``(H, W, 3 or 4)`` pixels in rgb8 / bgr8 / rgba8 / bgra8 order."""
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def pixels_to_metres(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 metres from 16UC1 / mono16 millimetres (uint16) or 32FC1 metres."""
    return depth_to_metres(pixels, 0.001 if pixels.dtype == np.uint16 else None)


def color_to_rgb(msg: Image, **kwargs) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from an rgb8 / bgr8 / rgba8 / bgra8 Image."""
    return pixels_to_rgb(image_to_numpy(msg, encodings=COLOR_ENCODINGS, role="colour", **kwargs), msg.encoding)


def depth_to_metres_msg(msg: Image, **kwargs) -> tuple[np.ndarray, str]:
    """``(H, W)`` float32 metres from 16UC1 (mm) or 32FC1 (m), plus the source encoding."""
    return pixels_to_metres(image_to_numpy(msg, encodings=DEPTH_ENCODINGS, role="depth", **kwargs)), msg.encoding


def label_to_numpy(msg: Image, **kwargs) -> np.ndarray:
    """``(H, W)`` integer label image (class ids, 0 = background) from mono8 / 16UC1."""
    return image_to_numpy(msg, encodings=LABEL_ENCODINGS, role="label", **kwargs).astype(np.int32)


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message from a contiguous array in ``encoding`` (little endian, no padding)."""
    dtype, channels = ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = array.tobytes()
    return msg


def decode_compressed(fmt: str, data: bytes | np.ndarray) -> tuple[np.ndarray, str]:
    """Pixels and raw encoding of a CompressedImage as image_transport's compressed plugin writes it
    (``format`` ``"<encoding>; <codec> compressed ..."``): colour in its encoding's channel order
    (rgb8 or bgr8), depth (lossless PNG) as 16UC1. Raises :class:`ImageConversionError` when the
    data cannot be decoded."""
    encoding = fmt.split(";")[0].strip() or "bgr8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageConversionError(f"cannot decode compressed image ({fmt!r})")
    if image.ndim == 3 and encoding.startswith("rgb"):
        image = image[..., ::-1]  # OpenCV decodes to BGR
    return np.ascontiguousarray(image), encoding


def compressed_to_image(msg: CompressedImage) -> Image:
    """The raw Image (same header, the recorded encoding) of a CompressedImage; see :func:`decode_compressed`."""
    pixels, encoding = decode_compressed(msg.format, bytes(msg.data))
    return numpy_to_image(pixels, encoding, msg.header)


def camera_info_msg(K: np.ndarray, height: int, width: int, header: Header | None = None) -> CameraInfo:
    """The CameraInfo of an undistorted pinhole camera with intrinsics ``K`` ``(3, 3)``: plumb_bob with
    zero distortion, ``R`` identity, ``P = [K | 0]``."""
    K = np.asarray(K, np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg = CameraInfo(height=int(height), width=int(width), distortion_model="plumb_bob")
    if header is not None:
        msg.header = header
    msg.d = [0.0] * 5
    msg.k, msg.r, msg.p = K.reshape(-1), np.eye(3).reshape(-1), P.reshape(-1)
    return msg


def camera_info_to_k(msg: CameraInfo) -> np.ndarray:
    """The 3x3 intrinsics from ``CameraInfo.k``; raises :class:`InputError` when unusable.

    Unusable: not finite, focal lengths not positive (an all-zero K means "uncalibrated"), or a
    last row other than ``[0, 0, 1]``.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        what = "all zeros (uncalibrated camera?)" if not np.any(K) else f"fx={K[0, 0]:g}, fy={K[1, 1]:g}, last row {K[2].tolist()}"
        raise InputError(f"camera_info K is unusable: {what}", "intrinsics")
    return K


def pose_msg(R: np.ndarray, t: np.ndarray) -> Pose:
    """A geometry_msgs Pose (quaternion x, y, z, w) from a rotation matrix and translation (m).

    The quaternion is normalised here, so every published orientation has unit norm; a
    non-finite ``R`` or ``t`` raises ValueError (the node withholds such poses before).
    """
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        raise ValueError(f"pose is not finite: R={np.asarray(R).tolist()}, t={np.asarray(t).tolist()}")
    q = wxyz_to_xyzw(matrix_to_quat(R))
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 0.5:
        raise ValueError(f"rotation {np.asarray(R).tolist()} gives no unit quaternion")
    qx, qy, qz, qw = (q / norm).tolist()
    return Pose(
        position=Point(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=Quaternion(x=qx, y=qy, z=qz, w=qw),
    )


def transform_msg(header: Header, child_frame_id: str, pose: Pose) -> TransformStamped:
    """A TransformStamped child <- header.frame_id carrying ``pose``."""
    tf = TransformStamped()
    tf.header = header
    tf.child_frame_id = child_frame_id
    tf.transform.translation = Vector3(x=pose.position.x, y=pose.position.y, z=pose.position.z)
    tf.transform.rotation = pose.orientation
    return tf
