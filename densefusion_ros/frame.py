"""One RGB-D observation, the unit that the pipeline, the datasets and the node exchange.

Units: depth is converted to float32 metres once, here, by :func:`depth_to_metres`; 0, NaN and
inf mean "no measurement". ``K`` is the 3x3 pinhole matrix of the colour image that the depth is
aligned to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def depth_to_metres(depth: np.ndarray, depth_scale: float | None = None) -> np.ndarray:
    """Float32 metres from uint16 raw depth times ``depth_scale`` (metres per unit), or float metres.

    RealSense and LineMOD 16UC1 depth is millimetres (``depth_scale=0.001``); YCB-Video raw
    depth uses ``1e-4``. Float input is taken as metres already and ``depth_scale`` must be None.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be 2-D (H, W), got shape {depth.shape}")
    if np.issubdtype(depth.dtype, np.integer):
        if depth_scale is None:
            raise ValueError("integer depth needs a depth_scale (metres per unit, e.g. 0.001 for mm)")
        return depth.astype(np.float32) * np.float32(depth_scale)
    if np.issubdtype(depth.dtype, np.floating):
        if depth_scale not in (None, 1.0):
            return depth.astype(np.float32) * np.float32(depth_scale)
        return depth.astype(np.float32, copy=False)
    raise ValueError(f"unsupported depth dtype {depth.dtype}")


@dataclass
class GtObject:
    """A ground-truth instance: object-to-camera pose (metres) and its visible mask."""

    class_id: int
    R: np.ndarray
    t: np.ndarray
    mask: np.ndarray | None = None
    visib_fract: float = 1.0


@dataclass
class Frame:
    """An RGB-D frame.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, RGB order.
        depth_m: ``(H, W)`` float32 metres, aligned to ``rgb``.
        K: ``(3, 3)`` float64 intrinsics.
        label: optional ``(H, W)`` integer image of class ids (0 = background) replacing segmentation.
        masks: optional ``{class_id: (H, W) bool}`` external masks replacing segmentation.
        gt: ground-truth objects when the frame comes from a dataset.
        stamp: seconds, for the caller's bookkeeping.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray
    label: np.ndarray | None = None
    masks: dict[int, np.ndarray] | None = None
    gt: list[GtObject] = field(default_factory=list)
    stamp: float = 0.0


def box_frame(height: int = 240, width: int = 320, *, seed: int = 0) -> Frame:
    """A synthetic frame that needs no camera or dataset: a flat wall at 0.6 m and
    a box face 5 cm in front of it over the middle third of the image (rows and columns).

    For warm-ups, tests and harnesses: the pipeline finds the box from ``label`` ``(H, W)`` uint8
    (1 on the box, 0 elsewhere), so no segmentation network is needed. ``rgb`` is uniform noise
    drawn with ``seed``; ``K`` a pinhole with focal length ``0.94 * width`` pixels, centred.
    """
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    depth = np.full((height, width), 0.6, np.float32)
    label = np.zeros((height, width), np.uint8)
    rows, cols = slice(height // 3, 2 * height // 3), slice(width // 3, 2 * width // 3)
    label[rows, cols] = 1
    depth[rows, cols] = 0.55
    f = 0.94 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return Frame(rgb=rgb, depth_m=depth, K=K, label=label)
