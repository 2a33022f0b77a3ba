"""Pose error metrics, bop_toolkit style: flat numpy functions, shapes in the docstrings.

Conventions: a pose ``(R (3, 3), t (3,))`` maps object points to the camera frame,
``p_cam = R p + t``; distances are in the units of ``pts`` and ``t`` (metres in this project).

* :func:`add`: mean distance between corresponding model points (ADD, Hinterstoisser 2012).
* :func:`adds`: for every GT-transformed point, the nearest estimate-transformed point (ADD-S /
  ADI, the YCB-Video toolbox direction gt -> est), with a KD-tree.
* :func:`vocap` / :func:`auc`: the YCB-Video toolbox ``VOCap`` area under the accuracy-threshold
  curve up to 0.1 m, in percent.
* :func:`accuracy_below`: the share (percent) of distances below a threshold (e.g. 2 cm), and
  :func:`linemod_accuracy` with the LineMOD threshold ``0.1 x diameter``.

Lost detections are passed as ``inf`` distances: they count as failures everywhere.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from densefusion_ros.geometry import transform_points

__all__ = [
    "accuracy_below",
    "accuracy_curve",
    "add",
    "adds",
    "add_or_adds",
    "auc",
    "linemod_accuracy",
    "vocap",
]


def _posed(pts: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Model points ``(n, 3)`` under pose ``R (3, 3), t (3,) or (3, 1)``, float64."""
    return transform_points(np.asarray(pts, np.float64), np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3))


def add(R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray, pts: np.ndarray) -> float:
    """Average Distance of model points (ADD).

    Args:
        R_est, R_gt: ``(3, 3)`` rotations.
        t_est, t_gt: ``(3,)`` or ``(3, 1)`` translations.
        pts: ``(n, 3)`` object-frame model points.

    Returns:
        ``mean_i || (R_est p_i + t_est) - (R_gt p_i + t_gt) ||``.
    """
    return float(np.linalg.norm(_posed(pts, R_est, t_est) - _posed(pts, R_gt, t_gt), axis=1).mean())


def adds(R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray, pts: np.ndarray) -> float:
    """Average distance to the closest point (ADD-S / ADI), for symmetric objects.

    Args: as :func:`add`.

    Returns:
        ``mean_i min_j || (R_gt p_i + t_gt) - (R_est p_j + t_est) ||``: for each GT-transformed
        point the nearest estimate-transformed point (YCB-Video toolbox and bop_toolkit direction).
    """
    est = _posed(pts, R_est, t_est)
    gt = _posed(pts, R_gt, t_gt)
    dist, _ = cKDTree(est).query(gt, k=1)
    return float(dist.mean())


def add_or_adds(
    R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray, pts: np.ndarray, symmetric: bool
) -> float:
    """ADD(-S): :func:`adds` for symmetric objects, :func:`add` otherwise."""
    return (adds if symmetric else add)(R_est, t_est, R_gt, t_gt, pts)


def rotation_error(R_est: np.ndarray, R_gt: np.ndarray) -> tuple[float, np.ndarray]:
    """Angle (degrees) and unit axis, in the object frame, of the turn ``R_gt^T R_est`` that takes
    the true orientation to the estimate. A miss of about 180 degrees about one fixed axis marks a
    near-symmetry of the object (a mug upside down with its handle in place, say)."""
    rotvec = Rotation.from_matrix(np.asarray(R_gt, np.float64).T @ np.asarray(R_est, np.float64)).as_rotvec()
    angle = float(np.linalg.norm(rotvec))
    return float(np.degrees(angle)), (rotvec / angle if angle > 1e-9 else np.array([0.0, 0.0, 1.0]))


def vocap(rec: np.ndarray, prec: np.ndarray) -> float:
    """The YCB-Video toolbox ``VOCap``: area under the monotone precision envelope.

    Args:
        rec: ``(n,)`` ascending thresholds (sorted distances), within ``[0, max_threshold]``.
        prec: ``(n,)`` accuracies at those thresholds.

    Returns:
        ``sum_i (mrec[i] - mrec[i-1]) * mpre[i]`` with ``mrec = [0, rec, 0.1]``,
        ``mpre = [0, prec, prec[-1]]`` made non-increasing from the right (as in the
        toolbox, whose upper end is fixed at 0.1).
    """
    rec = np.asarray(rec, dtype=np.float64).reshape(-1)
    prec = np.asarray(prec, dtype=np.float64).reshape(-1)
    if rec.size == 0:
        return 0.0
    mrec = np.concatenate([[0.0], rec, [0.1]])
    mpre = np.concatenate([[0.0], prec, [prec[-1]]])
    # The toolbox loop ``for i = 2:numel(mpre): mpre(i) = max(mpre(i), mpre(i-1))`` is a running max.
    mpre = np.maximum.accumulate(mpre)
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def auc(distances: np.ndarray, max_threshold: float = 0.1) -> float:
    """Area under the accuracy-threshold curve, in percent (0-100), as the YCB-Video toolbox.

    Args:
        distances: ``(n,)`` ADD or ADD-S per test instance; ``inf`` = lost detection.
        max_threshold: the curve's upper end, 0.1 m in the toolbox.

    Returns:
        ``VOCap(sorted d, (1..n)/n) / max_threshold * 100`` where distances above the threshold
        are set to inf (they still count in ``n``).
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1).copy()
    n = d.size
    if n == 0:
        return float("nan")
    d[~(d <= max_threshold)] = np.inf  # NaN counts as a failure too
    d = np.sort(d)
    acc = np.arange(1, n + 1, dtype=np.float64) / n
    keep = np.isfinite(d)
    if not keep.any():
        return 0.0
    # VOCap's upper end is the toolbox's 0.1; scale the curve so max_threshold maps to it.
    area = vocap(d[keep] * (0.1 / max_threshold), acc[keep])
    return float(area / 0.1 * 100.0)


def accuracy_below(distances: np.ndarray, threshold: float | np.ndarray) -> float:
    """Percent (0-100) of distances strictly below ``threshold`` (a scalar or ``(n,)`` per instance).

    ``inf`` / NaN distances (lost detections) count as failures.
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if d.size == 0:
        return float("nan")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), d.shape)
    return float(np.mean(d < thr) * 100.0)


def linemod_accuracy(distances: np.ndarray, diameters: float | np.ndarray, fraction: float = 0.1) -> float:
    """LineMOD ADD(-S) accuracy: percent of distances below ``fraction x diameter``.

    Args:
        distances: ``(n,)`` ADD for non-symmetric, ADD-S for symmetric objects.
        diameters: the object diameter, a scalar or ``(n,)`` per instance (same units).
    """
    return accuracy_below(distances, fraction * np.asarray(diameters, dtype=np.float64))


def accuracy_curve(distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Percent of distances below each threshold: ``(t,)`` for ``(n,)`` distances, ``(t,)`` thresholds."""
    d = np.sort(np.asarray(distances, dtype=np.float64).reshape(-1))
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if d.size == 0:
        return np.full(thresholds.shape, np.nan)
    return np.searchsorted(d, thresholds, side="left") / d.size * 100.0
