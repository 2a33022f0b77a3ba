"""Draw estimated poses on an RGB image: projected model points, RGB axes and a label.

Convention: images are ``(H, W, 3)`` uint8 in **RGB** order (as :class:`~densefusion_ros.frame.Frame`);
colours are RGB tuples. Axes follow the usual x = red, y = green, z = blue. Poses map object
points to the camera (OpenCV optical) frame in metres: ``p_cam = R p_obj + t``.
"""

from __future__ import annotations

import colorsys
from typing import Any, Iterable, Protocol

import cv2
import numpy as np

from densefusion_ros.catalog import Catalog
from densefusion_ros.geometry import project

__all__ = ["object_color", "draw_points", "draw_axes", "draw_label", "draw_pose", "draw_overlay"]

AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


class PoseLike(Protocol):
    class_id: int
    name: str
    R: np.ndarray
    t: np.ndarray
    confidence: float


def object_color(class_id: int, color: Iterable[float] | None = None) -> tuple[int, int, int]:
    """An RGB colour for a class: the catalog's ``color`` (0-1 or 0-255) or a golden-ratio hue."""
    if color is not None:
        c = np.asarray(list(color), dtype=np.float64)[:3]
        if c.max() <= 1.0:
            c = c * 255.0
        return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _in_front(points_cam: np.ndarray) -> np.ndarray:
    return points_cam[:, 2] > 1e-6


def draw_points(image: np.ndarray, K: np.ndarray, points_cam: np.ndarray, color: tuple[int, int, int], radius: int = 1) -> np.ndarray:
    """Splat camera-frame points ``(N, 3)`` (metres) as ``(2r+1)^2`` squares on ``image (H, W, 3)``
    uint8, in place; returns ``image``."""
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    pts = pts[_in_front(pts)]
    if len(pts) == 0:
        return image
    uv = np.rint(project(pts, K)).astype(np.int64)
    H, W = image.shape[:2]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = uv[:, 1] + dr, uv[:, 0] + dc
            ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
            image[r[ok], c[ok]] = color
    return image


def draw_axes(image: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, length: float, thickness: int = 2) -> np.ndarray:
    """Draw the x/y/z axes (red/green/blue), ``length`` metres long, of the pose ``(R (3, 3), t (3,))``
    on ``image (H, W, 3)`` uint8, in place; ``K (3, 3)``."""
    ends = np.vstack([np.zeros(3), np.eye(3) * length]) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    if not _in_front(ends).all():
        return image
    uv = project(ends, K)
    if not np.isfinite(uv).all() or np.abs(uv).max() > 1e5:
        return image
    o = tuple(int(v) for v in np.rint(uv[0]))
    for i, color in enumerate(AXIS_COLORS):
        cv2.line(image, o, tuple(int(v) for v in np.rint(uv[i + 1])), color, thickness, cv2.LINE_AA)
    return image


def draw_label(image: np.ndarray, text: str, anchor: tuple[int, int], color: tuple[int, int, int]) -> np.ndarray:
    """Write ``text`` on a dark box at pixel ``anchor = (u, v)``, clamped inside the image, in place."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    H, W = image.shape[:2]
    u = int(np.clip(anchor[0], 0, max(W - w - 2, 0)))
    v = int(np.clip(anchor[1], h + 2, max(H - base - 1, h + 2)))
    cv2.rectangle(image, (u, v - h - 2), (u + w + 2, v + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (u + 1, v - 1), font, scale, color, thick, cv2.LINE_AA)
    return image


def draw_pose(
    image: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    *,
    model_points: np.ndarray | None = None,
    color: tuple[int, int, int] = (0, 255, 0),
    axis_length: float = 0.05,
    label: str | None = None,
) -> np.ndarray:
    """Draw one pose ``(R (3, 3), t (3,) metres)`` on ``image (H, W, 3)`` uint8 in place: model points
    ``(M, 3)`` (object frame, metres), axes ``axis_length`` metres long, and label; ``K (3, 3)``."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64).reshape(3)
    if model_points is not None and len(model_points):
        draw_points(image, K, np.asarray(model_points, np.float64) @ R.T + t, color)
    draw_axes(image, K, R, t, axis_length)
    if label and t[2] > 1e-6:
        u, v = project(t[None], K)[0]
        if np.isfinite([u, v]).all():
            draw_label(image, label, (int(u) + 4, int(v) - 4), color)
    return image


def draw_overlay(
    rgb: np.ndarray,
    K: np.ndarray,
    instances: Iterable[PoseLike | Any],
    catalog: Catalog | None = None,
    *,
    num_points: int = 500,
    mask_alpha: float = 0.0,
) -> np.ndarray:
    """A copy of ``rgb`` with every instance drawn.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB.
        K: ``(3, 3)`` intrinsics.
        instances: objects with ``class_id``, ``name``, ``R``, ``t``, ``confidence`` (and
            optionally ``mask``), e.g. :class:`~densefusion_ros.pipeline.InstanceResult`.
        catalog: for model points (``ObjectInfo.sample_points``), colours and axis lengths
            (half the diameter); without it only axes (5 cm) and labels are drawn.
        num_points: model points drawn per object.
        mask_alpha: blend instance masks in the object colour with this weight (0 = off).
    """
    image = np.ascontiguousarray(np.array(rgb, dtype=np.uint8, copy=True))
    K = np.asarray(K, np.float64)
    for inst in instances:
        info = catalog.by_class_id(inst.class_id) if catalog is not None else None
        color = object_color(inst.class_id, info.color if info is not None else None)
        points, axis_length = None, 0.05
        if info is not None:
            try:
                points = info.sample_points(num_points)
                axis_length = 0.5 * info.diameter
            except Exception:  # a missing or broken mesh only loses the points
                points = None
        mask = getattr(inst, "mask", None)
        if mask_alpha > 0 and mask is not None and mask.shape == image.shape[:2]:
            blend = image[mask].astype(np.float32) * (1 - mask_alpha) + np.float32(color) * mask_alpha
            image[mask] = blend.astype(np.uint8)
        label = f"{inst.name} {float(inst.confidence):.2f}"
        draw_pose(image, K, inst.R, inst.t, model_points=points, color=color, axis_length=axis_length, label=label)
    return image
