"""Pose and camera geometry shared by the pipeline, training and evaluation.

Conventions:
    * Quaternions inside the networks are **w-first** ``[w, x, y, z]`` (DenseFusion); ROS
      messages are ``[x, y, z, w]``. Convert only with :func:`wxyz_to_xyzw` / :func:`xyzw_to_wxyz`.
    * A pose ``(R, t)`` maps object points to the camera frame: ``p_cam = R @ p_obj + t``,
      translations in metres, camera frame = OpenCV optical frame (x right, y down, z forward).
    * Pixel ``(row, col)``; intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    """Reorder quaternions ``(..., 4)`` from w-first to w-last (ROS order)."""
    q = np.asarray(q)
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def xyzw_to_wxyz(q: np.ndarray) -> np.ndarray:
    """Reorder quaternions ``(..., 4)`` from w-last (ROS order) to w-first."""
    q = np.asarray(q)
    return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def quat_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from w-first quaternions ``(..., 4)``; normalises first."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    return Rotation.from_quat(q.reshape(-1, 4), scalar_first=True).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """W-first unit quaternions ``(..., 4)`` with ``w >= 0`` from rotation matrices ``(..., 3, 3)``."""
    R = np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat(scalar_first=True, canonical=True)
    return q.reshape(R.shape[:-2] + (4,))


def quat_to_matrix_torch(q_wxyz: torch.Tensor) -> torch.Tensor:
    """Differentiable rotation matrices ``(..., 3, 3)`` from w-first quaternions ``(..., 4)``.

    The quaternion is normalised first; this is the matrix DenseFusion's loss builds.
    """
    q = q_wxyz / q_wxyz.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def compose(R1: np.ndarray, t1: np.ndarray, R2: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[R1|t1] @ [R2|t2]``: ``R = R1 R2``, ``t = R1 t2 + t1``. Batched over leading dims."""
    R = R1 @ R2
    t = (R1 @ t2[..., None])[..., 0] + t1
    return R, t


def relative(R1: np.ndarray, t1: np.ndarray, R2: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[R1|t1]^-1 @ [R2|t2]``: ``R = R1^T R2``, ``t = R1^T (t2 - t1)``, for ``R (3, 3)``, ``t (3,)``:
    the second pose seen from the first (two frames' transforms to a common one, or an estimate
    relative to the true pose)."""
    return R1.T @ R2, R1.T @ (t2 - t1)


def compose_torch(R1: torch.Tensor, t1: torch.Tensor, R2: torch.Tensor, t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`compose` for batches ``R (B, 3, 3)``, ``t (B, 3)``."""
    return R1 @ R2, (R1 @ t2.unsqueeze(-1)).squeeze(-1) + t1


def refine_pose_torch(
    points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, q_delta: torch.Tensor, t_delta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One refiner step: the refined pose, and the points in its frame (the next refiner input).

    The refiner sees the points in the frame of the current pose ``(R, t)`` and predicts a pose
    ``(R_d, t_d)`` in that frame; the refined pose is the current one composed with it,
    ``R' = R R_d``, ``t' = R t_d + t``, and the points move into the refined frame,
    ``R'^T (p - t')``. The delta is cast to the pose's dtype (e.g. float16 autocast output onto a
    float32 pose); differentiable in the delta.

    Args:
        points: ``(B, N, 3)`` camera-frame points, metres.
        R: ``(B, 3, 3)`` current rotation.
        t: ``(B, 3)`` current translation, metres.
        q_delta: ``(B, 4)`` the refiner's raw w-first quaternion (normalised here).
        t_delta: ``(B, 3)`` the refiner's translation, metres.

    Returns:
        ``R' (B, 3, 3)``, ``t' (B, 3)`` in the pose's dtype, and the points ``(B, N, 3)`` in the
        refined frame, in the points' dtype.
    """
    R_new, t_new = compose_torch(R, t, quat_to_matrix_torch(q_delta.to(R.dtype)), t_delta.to(t.dtype))
    return R_new, t_new, to_object_frame_torch(points, R_new.to(points.dtype), t_new.to(points.dtype))


def transform_points(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Object points ``(..., N, 3)`` to the camera frame: ``p @ R.T + t``."""
    return points @ np.swapaxes(R, -1, -2) + t[..., None, :]


def to_object_frame_torch(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Camera points ``(B, N, 3)`` into the frame of pose ``(R (B,3,3), t (B,3))``: ``R^T (p - t)``."""
    return (points - t.unsqueeze(1)) @ R


def backproject(depth_m: np.ndarray, K: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Camera-frame points ``(N, 3)`` float32 for pixels ``(rows, cols)`` of a metric depth image."""
    z = depth_m[rows, cols].astype(np.float32)
    x = (cols - K[0, 2]) * z / K[0, 0]
    y = (rows - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=-1).astype(np.float32)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``(N, 2)`` as ``(u=col, v=row)`` of camera-frame points ``(N, 3)``."""
    z = np.where(np.abs(points[:, 2]) < 1e-9, 1e-9, points[:, 2])
    return np.stack([K[0, 0] * points[:, 0] / z + K[0, 2], K[1, 1] * points[:, 1] / z + K[1, 2]], axis=-1)


def share_in_image(points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray, shape: tuple[int, int]) -> float:
    """Share of the object ``points`` ``(N, 3)`` that the pose ``(R, t)`` (object -> camera,
    metres) puts in front of the camera and inside an image of ``shape`` ``(H, W)``: how much
    of the object the image can show, whatever hides it there."""
    X = transform_points(points, R, t)
    front = X[:, 2] > 1e-6
    if not front.any():
        return 0.0
    u, v = project(X[front], K).T
    h, w = shape
    return float(((u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)).sum() / len(points))
