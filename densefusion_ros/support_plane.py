"""The surface the objects stand on, found in the depth image.

A pose whose model sinks into the table explains the depth as well as the right one when the
sunk part hides behind the table's own depth: a mug lying on its side with its handle turned
into the table shows the same body as the one with its handle turned away from the camera.
Verification and the tracker's check count model points below the support plane as points the
camera would see through (:func:`~densefusion_ros.verify.depth_terms`).

The plane is the largest plane of the frame's depth outside the objects' masks (RANSAC, then a
least-squares fit to its inliers), kept only when it holds a large share of those points: a
frame without a dominant surface has no plane and no penalty.
"""

from __future__ import annotations

import numpy as np

from densefusion_ros import geometry
from densefusion_ros.sampling import valid_depth

__all__ = ["support_plane"]


def support_plane(
    depth_m: np.ndarray,
    K: np.ndarray,
    exclude: np.ndarray | None = None,
    inlier_distance: float = 0.01,
    min_share: float = 0.3,
    samples: int = 3000,
    hypotheses: int = 64,
    seed: int = 0,
) -> np.ndarray | None:
    """The support plane ``(4,)`` float64 ``(nx, ny, nz, d)``: camera-frame points ``x`` on it
    satisfy ``n . x + d = 0``, ``n`` is a unit normal toward the camera (``d > 0``), metres.

    Args:
        depth_m: ``(H, W)`` depth in metres (0 / NaN = no reading).
        K: ``(3, 3)`` intrinsics.
        exclude: ``(H, W)`` bool, pixels that are not background (the objects' masks).
        inlier_distance: a point within this distance of a plane supports it (m).
        min_share: the plane must hold at least this share of the background points.
        samples: background points drawn evenly from the image.
        hypotheses: RANSAC planes tried (three points each, drawn with ``seed``).

    Returns:
        The plane, or None when the frame has fewer than 3 background points or no plane holds
        ``min_share`` of them.
    """
    background = valid_depth(depth_m)
    if exclude is not None:
        background &= ~np.asarray(exclude, bool)
    flat = np.flatnonzero(background)
    if len(flat) < 3:
        return None
    pick = np.linspace(0, len(flat) - 1, min(samples, len(flat))).astype(np.int64)
    rows, cols = np.divmod(flat[pick], background.shape[1])
    X = geometry.backproject(depth_m, K, rows, cols)  # (N, 3)
    rng = np.random.default_rng(seed)
    triples = X[rng.integers(0, len(X), size=(hypotheses, 3))]  # (P, 3, 3)
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-9
    if not ok.any():
        return None
    normals = normals[ok] / length[ok, None]
    offsets = -np.einsum("pk,pk->p", normals, triples[ok, 0])
    # einsum, not matmul: a BLAS call this size wakes OpenBLAS's threads, whose spinning then
    # slows the frame's torch work on a small CPU
    inliers = np.abs(np.einsum("nk,pk->np", X, normals) + offsets) < inlier_distance  # (N, P)
    best = int(inliers.sum(0).argmax())
    members = X[inliers[:, best]]
    if len(members) < max(3, min_share * len(X)):
        return None
    centre = members.mean(0)
    spread = members - centre
    normal = np.linalg.eigh(np.einsum("ni,nj->ij", spread, spread))[1][:, 0]  # least-squares refit
    d = -float(normal @ centre)
    if d < 0:  # the camera (the origin) lies on the positive side
        normal, d = -normal, -d
    return np.concatenate([normal, [d]])
