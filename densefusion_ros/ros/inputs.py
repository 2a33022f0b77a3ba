"""Checks of one synchronised input set (colour, depth, camera_info[, label]) in two stages.

1. :func:`check_set` reads header fields only (encodings, sizes, ``step``, data length, K,
   frame ids), so it costs the same for any image size. The node runs it on every set before
   the latest-frame slot: a malformed set never displaces a good one waiting for the worker.
2. :func:`decode_set` (on the worker) converts the pixels and checks the depth's content: at
   least one valid value, and a median that fits the declared units.

Both raise :class:`Rejected`, whose ``reason`` is a short key for the drop counters (``"depth
encoding"``, ``"size mismatch"``, ...) and whose text says what is wrong and what was expected.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from densefusion_ros.frame import Frame
from densefusion_ros.ros.conversions import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    LABEL_ENCODINGS,
    InputError,
    camera_info_to_k,
    check_image,
    color_to_rgb,
    depth_to_metres_msg,
    label_to_numpy,
)
from densefusion_ros.ros.sync import header_stamp


class Rejected(Exception):
    """An input set that is dropped: ``reason`` (counter key) and ``text`` (log line)."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason, self.text = reason, text


def _checked(input_name: str, call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except InputError as e:
        raise Rejected(f"{input_name} {e.reason}", str(e)) from None


def _size(msg: Image | CameraInfo) -> str:
    return f"{msg.width}x{msg.height}"


def check_set(color: Image, depth: Image, info: CameraInfo, label: Image | None = None, *, max_pixels: int) -> None:
    """Header-level checks of one set; raises :class:`Rejected`."""
    _checked("color", check_image, color, COLOR_ENCODINGS, max_pixels=max_pixels, role="colour")
    _checked("depth", check_image, depth, DEPTH_ENCODINGS, max_pixels=max_pixels, role="depth")
    if label is not None:
        _checked("label", check_image, label, LABEL_ENCODINGS, max_pixels=max_pixels, role="label")
    _checked("camera_info", camera_info_to_k, info)
    if (depth.width, depth.height) != (color.width, color.height):
        raise Rejected("depth size", f"depth is {_size(depth)} but colour is {_size(color)} (is depth aligned to colour?)")
    if label is not None and (label.width, label.height) != (color.width, color.height):
        raise Rejected("label size", f"label is {_size(label)} but colour is {_size(color)}")
    if info.width and info.height and (info.width, info.height) != (color.width, color.height):
        raise Rejected("camera_info size", f"camera_info is {_size(info)} but colour is {_size(color)} (K of another resolution)")
    frame = color.header.frame_id
    if not frame:
        raise Rejected("color frame_id", "colour image has an empty header.frame_id: poses would have no frame")
    for role, msg in (("depth", depth), ("camera_info", info), ("label", label)):
        if msg is not None and msg.header.frame_id and msg.header.frame_id != frame:
            raise Rejected("frame mismatch", f"{role} frame '{msg.header.frame_id[:80]}' is not the colour frame '{frame[:80]}' "
                                             "(use depth aligned to colour and its camera_info)")


def decode_set(color: Image, depth: Image, info: CameraInfo, label: Image | None = None, *, max_pixels: int,
               max_depth: float) -> Frame:
    """A :class:`Frame` from a set that passed :func:`check_set`; raises :class:`Rejected`.

    Depth values that are not finite or not positive become 0 ("no measurement").
    """
    rgb = _checked("color", color_to_rgb, color, max_pixels=max_pixels)
    depth_m, encoding = _checked("depth", depth_to_metres_msg, depth, max_pixels=max_pixels)
    K = _checked("camera_info", camera_info_to_k, info)
    label_img = _checked("label", label_to_numpy, label, max_pixels=max_pixels) if label is not None else None
    valid = np.isfinite(depth_m) & (depth_m > 0)
    if not valid.any():
        nan, inf = int(np.isnan(depth_m).sum()), int(np.isinf(depth_m).sum())
        raise Rejected("depth no valid value", f"depth ({encoding}) has no finite positive value: {nan} NaN, {inf} inf, "
                                               f"{depth_m.size - nan - inf} zero or negative of {depth_m.size} pixels")
    sample = depth_m[::4, ::4][valid[::4, ::4]]  # the units check needs no exact median: 1/16 of the pixels will do
    median = float(np.median(sample if sample.size else depth_m[valid]))
    if median > max_depth:
        hint = "32FC1 must be metres" if encoding == "32FC1" else f"{encoding} must be millimetres"
        raise Rejected("depth units", f"median depth {median:.1f} m exceeds max_depth {max_depth:g} m: wrong units? ({hint})")
    if not valid.all():
        depth_m = np.where(valid, depth_m, np.float32(0.0))
    return Frame(rgb=rgb, depth_m=depth_m, K=K, label=label_img, stamp=header_stamp(color))
