"""Open3D ICP refinement of an object pose against the observed instance points.

DenseFusion's paper compares against PoseCNN+ICP; here ICP is an optional pipeline stage
(``PipelineConfig.icp``):

* ``"off"``: no ICP (the published DenseFusion pipeline);
* ``"after"``: ICP starts from the network pose (after the K refiner iterations);
* ``"only"``: no network pose: ICP starts from the observed points' centroid with each of
  ``IcpOptions.init_rotations`` rotations and keeps the best fit. This is a geometric baseline,
  not DenseFusion; from a single identity rotation it converges only for small rotations.

Convention: a pose ``(R, t)`` maps object points to the camera frame, ``p_cam = R p_obj + t``,
metres. The *observed* cloud (camera frame) is registered onto the *model* cloud (object frame),
so ``fitness`` is the fraction of observed points with a model point within ``max_distance``:
meaningful for a partial view, where most model points are hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["IcpOptions", "IcpResult", "refine_pose", "icp_from_centroid", "cube_rotations"]


@dataclass
class IcpOptions:
    """ICP settings.

    Attributes:
        method: ``"point_to_point"`` or ``"point_to_plane"`` (normals estimated on the model cloud).
        max_distance: correspondence distance in metres; ``None`` = 10 % of the model's extent.
        max_iterations: Open3D ICP iteration cap.
        model_points: model points sampled from the mesh (``ObjectInfo.sample_points``).
        init_rotations: initial rotations tried in ``"only"`` mode: 1 (identity) or 24 (the cube group).
        min_fitness: a result with lower fitness keeps the input pose (``"after"`` mode).
    """

    method: Literal["point_to_point", "point_to_plane"] = "point_to_point"
    max_distance: float | None = None
    max_iterations: int = 30
    model_points: int = 2000
    init_rotations: int = 24
    min_fitness: float = 0.3


@dataclass
class IcpResult:
    """A refined pose, ``R (3, 3)`` and ``t (3,)`` float64, with Open3D's fitness and inlier RMSE (m)."""

    R: np.ndarray
    t: np.ndarray
    fitness: float
    rmse: float
    accepted: bool = True


def _cloud(points: np.ndarray):
    import open3d as o3d

    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    return pc


def _pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _default_distance(model_points: np.ndarray) -> float:
    extent = float(np.linalg.norm(model_points.max(axis=0) - model_points.min(axis=0)))
    return max(0.1 * extent, 1e-3)


def _register(observed, model, init_cam_to_obj: np.ndarray, options: IcpOptions, max_distance: float):
    import open3d as o3d

    reg = o3d.pipelines.registration
    if options.method == "point_to_plane":
        estimation = reg.TransformationEstimationPointToPlane()
    elif options.method == "point_to_point":
        estimation = reg.TransformationEstimationPointToPoint()
    else:
        raise ValueError(f"unknown ICP method {options.method!r}")
    criteria = reg.ICPConvergenceCriteria(max_iteration=int(options.max_iterations))
    return reg.registration_icp(observed, model, max_distance, init_cam_to_obj, estimation, criteria)


def _model_cloud(model_points: np.ndarray, options: IcpOptions, max_distance: float):
    model = _cloud(model_points)
    if options.method == "point_to_plane":
        import open3d as o3d

        model.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * max_distance, max_nn=30))
    return model


def refine_pose(
    observed_points: np.ndarray,
    model_points: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    options: IcpOptions | None = None,
) -> IcpResult:
    """ICP from the pose ``(R, t)``.

    Args:
        observed_points: ``(N, 3)`` camera-frame points of the instance, metres.
        model_points: ``(M, 3)`` object-frame model points, metres.
        R, t: the initial object-to-camera pose.
        options: :class:`IcpOptions`.

    Returns:
        the refined pose; ``accepted`` is False (and the input pose returned) when ICP found
        fewer than two correspondences or a fitness below ``options.min_fitness``.
    """
    options = options or IcpOptions()
    observed_points = np.asarray(observed_points, dtype=np.float64).reshape(-1, 3)
    model_points = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(3)
    if len(observed_points) < 3 or len(model_points) < 3:
        return IcpResult(R, t, 0.0, float("inf"), accepted=False)
    max_distance = options.max_distance or _default_distance(model_points)
    model = _model_cloud(model_points, options, max_distance)
    observed = _cloud(observed_points)
    init = np.linalg.inv(_pose_matrix(R, t))  # camera -> object
    result = _register(observed, model, init, options, max_distance)
    return _as_result(result, R, t, options.min_fitness)


def _as_result(result, R0: np.ndarray, t0: np.ndarray, min_fitness: float) -> IcpResult:
    fitness = float(result.fitness)
    rmse = float(result.inlier_rmse)
    if fitness <= 0 or fitness < min_fitness:
        return IcpResult(R0, t0, fitness, rmse if fitness > 0 else float("inf"), accepted=False)
    T = np.linalg.inv(np.asarray(result.transformation))  # object -> camera
    return IcpResult(T[:3, :3].copy(), T[:3, 3].copy(), fitness, rmse)


def cube_rotations() -> np.ndarray:
    """The 24 rotations of the cube group, ``(24, 3, 3)``, the identity first."""
    mats = Rotation.create_group("O").as_matrix()
    order = np.argsort([np.abs(m - np.eye(3)).sum() for m in mats], kind="stable")
    return mats[order]


def icp_from_centroid(
    observed_points: np.ndarray,
    model_points: np.ndarray,
    options: IcpOptions | None = None,
) -> IcpResult:
    """ICP without a network pose: start at the centroid, try ``options.init_rotations`` rotations.

    Each start puts the model's centre at the observed centroid (``t = mean(obs) - R mean(model)``).
    The best start is the one with the highest fitness, ties broken by RMSE. Always ``accepted``
    unless no start found a correspondence.
    """
    options = options or IcpOptions()
    observed_points = np.asarray(observed_points, dtype=np.float64).reshape(-1, 3)
    model_points = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    centroid = observed_points.mean(axis=0) if len(observed_points) else np.zeros(3)
    model_centre = model_points.mean(axis=0) if len(model_points) else np.zeros(3)
    starts = cube_rotations()[: max(1, int(options.init_rotations))]
    if len(observed_points) < 3 or len(model_points) < 3:
        return IcpResult(np.eye(3), centroid - model_centre, 0.0, float("inf"), accepted=False)
    max_distance = options.max_distance or _default_distance(model_points)
    model = _model_cloud(model_points, options, max_distance)
    observed = _cloud(observed_points)
    best: IcpResult | None = None
    for R0 in starts:
        t0 = centroid - R0 @ model_centre
        res = _as_result(_register(observed, model, np.linalg.inv(_pose_matrix(R0, t0)), options, max_distance), R0, t0, 0.0)
        if best is None or (res.fitness, -res.rmse) > (best.fitness, -best.rmse):
            best = res
    assert best is not None
    return best
