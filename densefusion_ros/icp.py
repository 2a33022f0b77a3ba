"""Open3D ICP refinement of an object pose against the observed instance points.

DenseFusion's paper compares against PoseCNN+ICP; here ICP is an optional pipeline stage
(``PipelineConfig.icp``):

* ``"none"``: no ICP (the published DenseFusion pipeline);
* ``"after"``: ICP starts from the network pose (after the K refiner iterations);
* ``"only"``: no network pose: ICP starts from the observed points' centroid with each
  rotation of ``IcpOptions.rotation_group`` and keeps the best fit. This is a geometric baseline,
  not DenseFusion; from a single identity rotation it converges only for small rotations.
* ``"verify"``: hypothesise and verify (:func:`refine_with_hypotheses`): ICP from the network
  pose turned by each rotation of ``rotation_group`` about the model's centre, and the result
  most consistent with the depth image (:func:`depth_consistency`) wins. It recovers the
  orientation when the network is far off (a quarter or half turn, say), at one coarse ICP per
  rotation: for accuracy over speed, e.g. with the node's on-demand ``~/trigger``.

Convention: a pose ``(R, t)`` maps object points to the camera frame, ``p_cam = R p_obj + t``,
metres. The *observed* cloud (camera frame) is registered onto the *model* cloud (object frame),
so ``fitness`` is the fraction of observed points with a model point within ``max_distance``:
meaningful for a partial view, where most model points are hidden.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from densefusion_ros.sampling import pixels_of, valid_depth

__all__ = [
    "IcpOptions", "IcpResult", "refine_pose", "icp_from_centroid", "group_rotations", "depth_consistency",
    "refine_with_hypotheses", "mask_grid", "pose_score", "centroid_translation",
]


@dataclass
class IcpOptions:
    """ICP settings.

    Attributes:
        method: ``"point_to_point"`` or ``"point_to_plane"`` (normals estimated on the model cloud).
        max_distance: correspondence distance in metres; ``None`` = 10 % of the model's extent.
        max_iterations: Open3D ICP iteration cap.
        model_points: model points sampled from the mesh (``ObjectInfo.sample_points``).
        rotation_group: the initial rotations of the ``"only"`` and ``"verify"`` modes
            (:func:`group_rotations`): ``"icosahedral"`` (60; every rotation is within 44 degrees
            of one of them) or ``"cube"`` (24; within 63 degrees). The finer icosahedral cover
            is the default: more starts lie within reach of the right orientation (see
            docs/design_notes.md, 'icp: rotation group').
        init_rotations: use only the first this many (the identity first; 0 = all).
        min_fitness: a result with lower fitness keeps the input pose (``"after"`` mode), or is
            not accepted (``"verify"``), and the pipeline does not publish it.
        observed_points: observed points of the instance used by the pipeline's ICP stage, sampled
            from its whole mask (0 = the network's N points only).
        verify_tolerance, verify_violation_weight, verify_coverage_weight:
            :func:`depth_consistency`'s ``tolerance`` (m), ``violation_weight`` and
            ``coverage_weight`` in ``"verify"`` mode. The coverage term rewards a pose that
            explains the whole mask (a mug's handle on the side the mask shows); its weight was
            chosen on a tuning split, never on the held-out one (docs/design_notes.md,
            'icp: coverage weight').
        verify_method: the ICP ``method`` of ``"verify"`` mode. Point-to-plane reaches poses
            that point-to-point ICP misses from the same starts: it slides along flat parts of
            the surface instead of sticking to the nearest points (docs/design_notes.md,
            'icp: point-to-plane in verify mode').
        verify_threads: threads that run the hypotheses' ICPs (Open3D releases the GIL during
            ICP; the result is the same). Two threads on a two-core CPU save time over one
            (docs/design_notes.md, 'icp: threads').
        verify_climb: the best this many distinct hypotheses (2 mm apart) each climb the verify
            score (turns of 8, 4, 2 degrees about the model's axes, shifts of 4 and 2 mm) before
            the best climbed pose goes to the final ICP; 0 = choose by the ICP results' scores. A
            coarse ICP from a start tens of degrees off leaves the right pose a little misaligned
            (a mug's handle a few degrees off), and a wrong but well-aligned one then outscores
            it. The count was chosen on the tuning splits (docs/design_notes.md, 'icp: climbing
            the score').
        verify_centroid_starts: when the observed points place the model's centre
            (:func:`centroid_translation`) farther than the ICP correspondence distance from where
            the input pose places it, the rotations also start from there (up to twice the ICPs).
            A heavily occluded object's network pose can be centimetres off, beyond what any of
            the rotations' ICPs reach. Chosen on the tuning splits, at a cost in time
            (docs/design_notes.md, 'icp: starts at the observed points').
        verify_backend: ``"torch"``: :func:`densefusion_ros.verify.verify_instances`, all
            instances of a frame as batched tensor code on the pipeline's device; ``"open3d"``:
            :func:`refine_with_hypotheses`, one Open3D ICP per hypothesis (to compare against).
        verify_screen_points, verify_screen_iterations, verify_keep: ``"torch"`` backend only:
            every start first runs ``verify_screen_iterations`` ICP steps on at most
            ``verify_screen_points`` observed points and is scored; only each instance's best
            ``verify_keep`` go on to the full coarse ICP (0 points = no screening: every start does).
        verify_climb_margin: ``"torch"`` backend: an object whose best coarse result leads its
            second-best distinct one by more than this score does not climb (its best goes
            straight to the final ICP); only near-ties, where the climb decides, pay for it
            (0 = every object climbs).
        verify_support_plane: ``"torch"`` backend and the tracker: model points more than
            ``verify_tolerance`` below the frame's support plane (the table,
            :func:`densefusion_ros.support_plane.support_plane`) count as violating.
        verify_max_violation: ``"torch"`` backend: a verified pose with a larger share of its
            model points violating the depth (in front of the measured surface by more than
            ``verify_tolerance``, or below the support plane) is not accepted, and the pipeline
            does not publish it: the camera sees through such a pose (1 = accept any).
        verify_max_seen_violation: ``"torch"`` backend: a verified pose with a larger share of the
            model points that the camera would see (the posed model's front surface) violating the
            depth (:func:`~densefusion_ros.verify.seen_violation`) is not published either: a
            distractor of the object's colour taken for it hides most of the model, and what shows
            lies in front (1 = publish any).
        verify_min_in_view: ``icp="verify"``: a verified pose with less than this share of its
            model points inside the image (:func:`~densefusion_ros.geometry.share_in_image`) is
            not published: the depth check weighs only what the image shows, and a sliver of the
            model at the image's edge fits any surface of the object's colour there (0 = publish
            any). The tracker acquires through this check (with ``icp="verify"``, its default),
            and neither re-checks nor recovers a track predicted this far outside
            (:class:`~densefusion_ros.tracking.Tracker`).
    """

    method: Literal["point_to_point", "point_to_plane"] = "point_to_point"
    max_distance: float | None = None
    max_iterations: int = 30
    model_points: int = 2000
    rotation_group: Literal["cube", "icosahedral"] = "icosahedral"
    init_rotations: int = 0
    min_fitness: float = 0.3
    observed_points: int = 1000
    verify_tolerance: float = 0.01
    verify_violation_weight: float = 3.0
    verify_coverage_weight: float = 16.0
    verify_method: Literal["point_to_point", "point_to_plane"] = "point_to_plane"
    verify_threads: int = 2
    verify_climb: int = 4
    verify_centroid_starts: bool = True
    verify_backend: Literal["torch", "open3d"] = "torch"
    verify_screen_points: int = 200
    verify_screen_iterations: int = 10
    verify_keep: int = 8
    verify_support_plane: bool = True
    verify_climb_margin: float = 0.0
    verify_max_violation: float = 0.2
    verify_max_seen_violation: float = 0.35
    verify_min_in_view: float = 0.1

    @property
    def score_weights(self) -> tuple[float, float, float]:
        """The verification score's ``(tolerance, violation_weight, coverage_weight)``
        (:func:`densefusion_ros.verify.score_poses`' last three arguments)."""
        return self.verify_tolerance, self.verify_violation_weight, self.verify_coverage_weight


@dataclass
class IcpResult:
    """A refined pose, ``R (3, 3)`` and ``t (3,)`` float64, with Open3D's fitness and inlier RMSE (m);
    ``violating``: the share of its model points that violate the depth, and ``seen_violating``: of
    those the camera would see (:func:`~densefusion_ros.verify.seen_violation`; batched verification
    only, and ``seen_violating`` only for a pose that verification fitted, else None)."""

    R: np.ndarray
    t: np.ndarray
    fitness: float
    rmse: float
    accepted: bool = True
    violating: float | None = None
    seen_violating: float | None = None


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


def default_distance(model_points: np.ndarray) -> float:
    """The default ICP correspondence distance: 10 % of the model's extent (bounding-box diagonal), at least 1 mm."""
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


def _as_arrays(observed_points, model_points, R, t) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An ICP call's inputs as float64 arrays: ``(N, 3)``, ``(M, 3)``, ``(3, 3)`` and ``(3,)``."""
    observed = np.asarray(observed_points, dtype=np.float64).reshape(-1, 3)
    model = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    return observed, model, np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64).reshape(3)


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
        R, t: the initial object-to-camera pose, ``(3, 3)`` and ``(3,)`` metres.
        options: :class:`IcpOptions`.

    Returns:
        the refined pose; ``accepted`` is False (and the input pose returned) when ICP found
        fewer than two correspondences or a fitness below ``options.min_fitness``.
    """
    options = options or IcpOptions()
    observed_points, model_points, R, t = _as_arrays(observed_points, model_points, R, t)
    if len(observed_points) < 3 or len(model_points) < 3:
        return IcpResult(R, t, 0.0, float("inf"), accepted=False)
    max_distance = options.max_distance or default_distance(model_points)
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


def group_rotations(group: Literal["cube", "icosahedral"] = "cube", count: int = 0) -> np.ndarray:
    """The rotations of the cube (24) or icosahedral (60) group, ``(n, 3, 3)``, identity first,
    then by distance from it; ``count`` > 0 keeps the first ``count``."""
    names = {"cube": "O", "icosahedral": "I"}
    if group not in names:
        raise ValueError(f"rotation group must be 'cube' or 'icosahedral', got {group!r}")
    mats = Rotation.create_group(names[group]).as_matrix()
    order = np.argsort([np.abs(m - np.eye(3)).sum() for m in mats], kind="stable")
    return mats[order][: count if count > 0 else None]


def icp_from_centroid(
    observed_points: np.ndarray,
    model_points: np.ndarray,
    options: IcpOptions | None = None,
) -> IcpResult:
    """ICP without a network pose: start at the centroid, try each rotation of ``options.rotation_group``.

    ``observed_points (N, 3)`` camera frame and ``model_points (M, 3)`` object frame, metres.
    Each start puts the model's centre at the observed centroid (``t = mean(obs) - R mean(model)``).
    The best start is the one with the highest fitness, ties broken by RMSE. Always ``accepted``
    unless no start found a correspondence.
    """
    options = options or IcpOptions()
    observed_points = np.asarray(observed_points, dtype=np.float64).reshape(-1, 3)
    model_points = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    centroid = observed_points.mean(axis=0) if len(observed_points) else np.zeros(3)
    model_centre = model_points.mean(axis=0) if len(model_points) else np.zeros(3)
    starts = group_rotations(options.rotation_group, options.init_rotations)
    if len(observed_points) < 3 or len(model_points) < 3:
        return IcpResult(np.eye(3), centroid - model_centre, 0.0, float("inf"), accepted=False)
    max_distance = options.max_distance or default_distance(model_points)
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


def mask_grid(mask: np.ndarray, depth_m: np.ndarray, cells: int = 1024) -> tuple[int, int, int, np.ndarray] | None:
    """The pixels of ``mask (H, W)`` bool with a reading in ``depth_m (H, W)`` (metres) on a grid
    of about ``cells`` cells inside their bounding box: ``(row0, col0, cell size, occupied cells
    (GH, GW) uint8)`` in pixels, or None when there are none. Computed once per instance; each
    pose's coverage (:func:`depth_consistency`) then needs only its own points. Only supported
    points cover a cell, and a point is supported only on a reading: a mask's pixels without depth
    (a hole, an object nearer than the camera's range) would leave a right pose uncovered."""
    in_rows, in_cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(in_rows) == 0:
        return None
    box = (slice(in_rows[0], in_rows[-1] + 1), slice(in_cols[0], in_cols[-1] + 1))  # the mask's box, not the whole image
    rows, cols = pixels_of(mask[box] & valid_depth(depth_m[box]))
    if len(rows) == 0:
        return None
    rows, cols = rows + in_rows[0], cols + in_cols[0]
    r0, c0 = int(rows.min()), int(cols.min())
    g = max(1, int(round(np.sqrt(len(rows) / cells))))
    occupied = np.zeros(((rows.max() - r0) // g + 1, (cols.max() - c0) // g + 1), np.uint8)
    occupied[(rows - r0) // g, (cols - c0) // g] = 1
    return r0, c0, g, occupied


def _mask_coverage(u: np.ndarray, v: np.ndarray, grid: tuple[int, int, int, np.ndarray] | None) -> float:
    """Share of the grid's mask cells that the pixels ``(u, v)`` reach (so that a few thousand
    points can cover a well-explained mask), hits spread to the 8 neighbouring cells."""
    if grid is None:
        return 0.0
    r0, c0, g, occupied = grid
    hit = np.zeros_like(occupied)
    keep = (v >= r0) & (u >= c0) & ((v - r0) // g < occupied.shape[0]) & ((u - c0) // g < occupied.shape[1])
    hit[(v[keep] - r0) // g, (u[keep] - c0) // g] = 1
    hit = cv2.dilate(hit, np.ones((3, 3), np.uint8))
    return float((occupied & hit).sum() / occupied.sum())


def depth_consistency(
    model_points_cam: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    mask: np.ndarray,
    tolerance: float = 0.01,
    violation_weight: float = 3.0,
    coverage_weight: float = 0.0,
    grid: tuple[int, int, int, np.ndarray] | None = None,
) -> float:
    """How well a posed model explains the depth image: ``(supported - w * violating) / M + c * coverage``.

    ``model_points_cam`` are ``M`` model points already in the camera frame. A point that projects
    into ``mask`` within ``tolerance`` of the measured depth is *supported*; a point more than
    ``tolerance`` in front of the measured depth is *violating* (the camera sees through it, so the
    object cannot be there); points behind the measured surface (the hidden side, occlusion) and
    points without a depth reading count for nothing. *coverage* is the share of the mask (its
    pixels with a reading: :func:`mask_grid`) that supported points reach: a pose that leaves part of the mask unexplained (a mug's handle on the
    wrong side) scores lower. In (-w, 1 + c]; higher is better. ``grid``: ``mask_grid(mask, depth_m)``,
    when the caller scores many poses against one mask.

    Shapes and units: ``model_points_cam (M, 3)`` and ``tolerance`` metres, ``depth_m (H, W)``
    metres (0 or NaN = no reading), ``K (3, 3)``, ``mask (H, W)`` bool.
    """
    X = np.asarray(model_points_cam, dtype=np.float64).reshape(-1, 3)
    if len(X) == 0:
        return float("-inf")
    z = X[:, 2]
    front = z > 1e-6
    h, w = depth_m.shape[:2]
    u = np.full(len(X), -1, np.int64)
    v = np.full(len(X), -1, np.int64)
    u[front] = np.round(K[0, 0] * X[front, 0] / z[front] + K[0, 2]).astype(np.int64)
    v[front] = np.round(K[1, 1] * X[front, 1] / z[front] + K[1, 2]).astype(np.int64)
    inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    d = np.zeros(len(X))
    d[inside] = depth_m[v[inside], u[inside]]
    measured = inside & np.isfinite(d) & (d > 0)
    in_mask = np.zeros(len(X), bool)
    in_mask[inside] = mask[v[inside], u[inside]]
    supported = measured & in_mask & (np.abs(z - d) < tolerance)
    violating = measured & (z < d - tolerance)
    score = float((supported.sum() - violation_weight * violating.sum()) / len(X))
    if coverage_weight:
        score += coverage_weight * _mask_coverage(u[supported], v[supported], mask_grid(mask, depth_m) if grid is None else grid)
    return score


SCORE_POINTS = 2000
"""Model points a ``"verify"`` pose is scored on (the catalog's default sample: all of them), on a
mask grid of about 1024 cells (:func:`mask_grid`). Fewer points make a noisy score: a small part
that alone tells two poses apart (a mug's handle, the only cue to its turn about its axis) then
holds too few points to outweigh the noise of the rest (docs/design_notes.md, 'icp: scoring on
2000 points')."""


def _score_subset(model_points: np.ndarray, count: int) -> np.ndarray:
    """About ``count`` of ``model_points``, evenly strided: what a pose is scored on."""
    return model_points[:: max(1, len(model_points) // max(1, count))]


def _verify_score(scored, R, t, depth_m, K, mask, options: IcpOptions, grid=None) -> float:
    return depth_consistency(
        scored @ np.asarray(R).T + np.asarray(t).reshape(3), depth_m, K, mask, options.verify_tolerance,
        options.verify_violation_weight, options.verify_coverage_weight, grid,
    )  # fmt: skip


def pose_score(
    model_points: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    mask: np.ndarray,
    options: IcpOptions | None = None,
    score_points: int = SCORE_POINTS,
) -> float:
    """:func:`depth_consistency` of the pose ``(R (3, 3), t (3,))`` with ``"verify"`` mode's
    settings (tolerance, weights, ``score_points`` of the ``(M, 3)`` object-frame model points):
    the score by which :func:`refine_with_hypotheses` ranks its hypotheses, for one pose.
    ``depth_m (H, W)`` metres, ``K (3, 3)``, ``mask (H, W)`` bool."""
    options = options or IcpOptions()
    model_points = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    return _verify_score(_score_subset(model_points, score_points), R, t, depth_m, K, mask, options)


def centroid_translation(observed_points: np.ndarray, model_points: np.ndarray, R: np.ndarray) -> np.ndarray:
    """The translation that puts the centre of ``model_points`` (turned by ``R``) a quarter of the
    model's extent (bounding-box diagonal) behind the centroid of ``observed_points``, along the
    viewing ray. The camera sees the near side, so the centre lies behind what it sees: for a
    ball seen pixel by pixel, 2/3 of the radius (0.19 of the diagonal); the ICPs that start
    there take up the rest. ``(3,)``, metres."""
    observed = np.asarray(observed_points, dtype=np.float64).reshape(-1, 3)
    model = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    centroid = observed.mean(axis=0)
    ray = centroid / max(float(np.linalg.norm(centroid)), 1e-9)
    extent = float(np.linalg.norm(model.max(axis=0) - model.min(axis=0)))
    return centroid + 0.25 * extent * ray - np.asarray(R, dtype=np.float64) @ model.mean(axis=0)


def refine_with_hypotheses(
    observed_points: np.ndarray,
    model_points: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    mask: np.ndarray,
    options: IcpOptions | None = None,
    score_points: int = SCORE_POINTS,
    coarse_points: int = 600,
) -> IcpResult:
    """ICP (``options.verify_method``) from ``(R, t)`` turned by each rotation of
    ``options.rotation_group`` about the model's centre (and, with
    ``options.verify_centroid_starts``, from the same turns placed by
    :func:`centroid_translation`); the accepted result with the best :func:`depth_consistency` wins.

    Each hypothesis runs ICP on at most ``coarse_points`` observed points (one model cloud serves
    all of them and the final ICP); only the winner is refined with every observed point (as
    accurate as full ICP per hypothesis, for a fraction of its time: docs/design_notes.md,
    'icp: coarse ICP per hypothesis'). The first hypothesis is ``(R, t)`` itself. With ``options.verify_climb``
    the best few distinct results first climb the score (:func:`_climb`) and the best climbed
    pose is the winner. The input pose comes back, not accepted, when ICP accepts no hypothesis.

    Shapes and units as :func:`refine_pose` (``observed_points (N, 3)``, ``model_points (M, 3)``,
    metres; ``R (3, 3)``, ``t (3,)``) and :func:`depth_consistency` (``depth_m (H, W)`` metres,
    ``K (3, 3)``, ``mask (H, W)`` bool).
    """
    options = options or IcpOptions()
    options = replace(options, method=options.verify_method)
    observed_points, model_points, R, t = _as_arrays(observed_points, model_points, R, t)
    if len(observed_points) < 3 or len(model_points) < 3:
        return IcpResult(R, t, 0.0, float("inf"), accepted=False)
    centre = model_points.mean(axis=0)
    scored = _score_subset(model_points, score_points)
    max_distance = options.max_distance or default_distance(model_points)
    model = _model_cloud(model_points, options, max_distance)
    coarse = _cloud(observed_points[:: max(1, -(-len(observed_points) // max(1, coarse_points)))])
    grid = mask_grid(mask, depth_m) if options.verify_coverage_weight else None
    rotations = group_rotations(options.rotation_group, options.init_rotations)
    starts = [(S, t) for S in rotations]
    if options.verify_centroid_starts:
        t_obs = centroid_translation(observed_points, model_points, R)
        if np.linalg.norm(t_obs - t) > max_distance:  # else the ICPs from both would end alike
            starts += [(S, t_obs) for S in rotations]

    def hypothesis(start: tuple[np.ndarray, np.ndarray]) -> tuple[IcpResult, float]:
        S, t_start = start
        R0 = R @ S
        t0 = t_start + R @ centre - R0 @ centre
        init = np.linalg.inv(_pose_matrix(R0, t0))
        res = _as_result(_register(coarse, model, init, options, max_distance), R0, t0, options.min_fitness)
        return res, _verify_score(scored, res.R, res.t, depth_m, K, mask, options, grid) if res.accepted else float("-inf")

    with ThreadPoolExecutor(max(1, options.verify_threads)) as pool:  # Open3D's ICP releases the GIL
        results = pool.map(hypothesis, starts)
        ranked = sorted(((score, res) for res, score in results if res.accepted), key=lambda c: -c[0])
    if not ranked:
        return IcpResult(R, t, 0.0, float("inf"), accepted=False)

    def score_of(Rc: np.ndarray, tc: np.ndarray) -> float:
        return _verify_score(scored, Rc, tc, depth_m, K, mask, options, grid)

    best = ranked[0][1]
    if options.verify_climb > 0:
        climbed = [_climb(score_of, res.R, res.t, centre, s) for s, res in _distinct(ranked, scored, options.verify_climb)]
        _, R_best, t_best = max(climbed, key=lambda c: c[0])
        best = replace(best, R=R_best, t=t_best)
    final = _register(_cloud(observed_points), model, np.linalg.inv(_pose_matrix(best.R, best.t)), options, max_distance)
    return _as_result(final, best.R, best.t, options.min_fitness)


_AXES = np.concatenate([np.eye(3), -np.eye(3)])
_CLIMB_STEPS = tuple(  # per stage: turns of 8, 4, 2 degrees about +-x, y, z and shifts of 4, 2, 2 mm
    (Rotation.from_rotvec(np.radians(degrees) * _AXES).as_matrix(), metres * _AXES)
    for degrees, metres in ((8.0, 0.004), (4.0, 0.002), (2.0, 0.002))
)


def _climb(score, R: np.ndarray, t: np.ndarray, centre: np.ndarray, start: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Coordinate ascent of ``score(R, t)`` from ``(R, t)`` (scoring ``start``): turns about the
    model's axes through ``centre`` and shifts along the camera axes, coarse to fine
    (``_CLIMB_STEPS``); a move is kept when it raises the score. ``(score, R, t)``."""
    best = start
    for turns, shifts in _CLIMB_STEPS:
        improved = True
        while improved:
            improved = False
            for S in turns:
                R2 = R @ S
                t2 = t + R @ centre - R2 @ centre
                if (s := score(R2, t2)) > best:
                    best, R, t, improved = s, R2, t2, True
            for d in shifts:
                if (s := score(R, t + d)) > best:
                    best, t, improved = s, t + d, True
    return best, R, t


def _distinct(ranked: list[tuple[float, IcpResult]], points: np.ndarray, count: int, apart: float = 0.002):
    """The first ``count`` of ``ranked`` (best first) whose posed ``points`` lie more than ``apart``
    (mean distance, metres) from those of every one already taken: hypotheses that converged
    to the same pose are climbed once."""
    sub = points[:: max(1, len(points) // 500)]
    taken: list[tuple[float, IcpResult]] = []
    posed: list[np.ndarray] = []
    for score, res in ranked:
        X = sub @ res.R.T + res.t
        if all(np.linalg.norm(X - Y, axis=1).mean() > apart for Y in posed):
            taken.append((score, res))
            posed.append(X)
            if len(taken) == count:
                break
    return taken
