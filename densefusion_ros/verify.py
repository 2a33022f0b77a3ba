"""Hypothesise and verify as batched tensor code on the pipeline's device (CPU or CUDA alike).

The same search as :func:`densefusion_ros.icp.refine_with_hypotheses` (the Open3D path, kept to
compare against), for all instances of a frame at once:

1. **starts**: per instance, the network pose turned by each rotation of
   ``IcpOptions.rotation_group`` about the model's centre (and, with
   ``verify_centroid_starts``, the same turns placed by
   :func:`~densefusion_ros.icp.centroid_translation`);
2. **coarse ICP** at once (:func:`icp`), on at most ``coarse_points`` observed points per
   instance, of the best ``verify_keep`` distinct starts of each instance after a short
   screening ICP of every start on ``verify_screen_points`` points;
3. **score** every result against the depth image and mask (:func:`score_poses`);
4. **climb**: the best ``verify_climb`` distinct results of each instance climb the score by
   coordinate ascent over turns and shifts, each move scored for all candidates in one call
   (only instances whose best two are within ``verify_climb_margin``: near-ties);
5. **final ICP** of each instance's best climbed pose on all its observed points.

Nearest model points come from a voxel lookup built once per object (:class:`ModelGeometry`):
each cell of a grid around the model holds the index of the model point nearest its centre, so
a correspondence is a gather, not a search, and thousands of hypotheses cost little more than
one. Poses map object points to the camera frame, ``p_cam = R p_obj + t``, metres.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from densefusion_ros.icp import IcpOptions, IcpResult, centroid_translation, default_distance, group_rotations, mask_grid  # fmt: skip

__all__ = [
    "ModelGeometry", "ModelBank", "padded", "DepthEvidence", "icp", "score_poses", "score_of_terms", "depth_terms", "seen_violation",
    "verify_instances", "VerifyInput", "climb", "Hypotheses", "propose", "conclude",
]


def _normals(points: np.ndarray, neighbours: int = 30) -> np.ndarray:
    """Unit normals ``(M, 3)`` of a point sample: the least-variance axis of each point's
    ``neighbours`` nearest (Open3D's ``estimate_normals``; the sign is irrelevant to point-to-plane ICP)."""
    _, idx = cKDTree(points).query(points, k=min(neighbours, len(points)))
    local = points[idx] - points[idx].mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("mki,mkj->mij", local, local))
    return vectors[:, :, 0]


@dataclass
class ModelGeometry:
    """One object's model points, normals and nearest-point voxel lookup, on a device.

    Attributes:
        points, normals: ``(M, 3)`` float32, object frame, metres.
        centre: ``(3,)`` the points' mean; ``centre_np`` the same as a NumPy array, and
            ``radius`` the points' farthest distance from it (m): the model's bounding sphere.
        max_distance: ICP correspondence distance, metres.
        origin: ``(3,)`` the grid's lower corner; ``cell``: its cell size (m); ``dims``: cells per axis.
        lookup: ``(gx * gy * gz,)`` int32, the nearest model point of each cell centre.
    """

    points: torch.Tensor
    normals: torch.Tensor
    centre: torch.Tensor
    max_distance: float
    origin: torch.Tensor
    cell: float
    dims: tuple[int, int, int]
    lookup: torch.Tensor
    centre_np: np.ndarray
    radius: float

    @classmethod
    def build(
        cls, points: np.ndarray, max_distance: float | None, device: torch.device | str, cells: int = 128
    ) -> "ModelGeometry":
        """From ``(M, 3)`` model points: the grid spans the points' box grown by the correspondence
        distance, so every point within that distance of the model falls inside it; about
        ``cells`` cells along the longest side (at least 1 mm each; the choice of 128 is in
        models/README.md)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        dist = max_distance or default_distance(pts)
        lo, hi = pts.min(axis=0) - dist, pts.max(axis=0) + dist
        cell = max(float((hi - lo).max()) / cells, 1e-3)
        dims = tuple(int(d) for d in np.ceil((hi - lo) / cell).astype(int) + 1)
        axes = [lo[i] + cell * (np.arange(dims[i]) + 0.5) for i in range(3)]
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        _, nearest = cKDTree(pts).query(centres, workers=-1)
        as_tensor = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        return cls(
            points=as_tensor(pts), normals=as_tensor(_normals(pts)), centre=as_tensor(pts.mean(axis=0)),
            max_distance=float(dist), origin=as_tensor(lo), cell=cell, dims=dims,
            lookup=as_tensor(nearest, torch.int32), centre_np=pts.mean(axis=0),
            radius=float(np.linalg.norm(pts - pts.mean(axis=0), axis=1).max()),
        )  # fmt: skip

    @functools.cached_property
    def bank(self) -> "ModelBank":
        """This model alone as a :class:`ModelBank`, made once: the one-object checks, climbs and
        covariances of the tracker would otherwise stack it anew several times a frame."""
        return ModelBank([self])


class ModelBank:
    """The models of one batch side by side: per row of a batch, its model's points, normals and
    lookup, found through per-model offsets (models may differ in grid size, not in point count).

    Poses and points inside ICP are coordinates first (``[B,3,N]``): each coordinate of a batch is
    one contiguous block, and the products have their long side last.
    """

    def __init__(self, models: list[ModelGeometry]) -> None:
        self.points = torch.stack([m.points for m in models])  # [O,M,3]
        self.normals = torch.stack([m.normals for m in models])
        self.centre = torch.stack([m.centre for m in models])  # [O,3]
        device = self.points.device
        self.max_distance = torch.tensor([m.max_distance for m in models], device=device)
        self.origin = torch.stack([m.origin for m in models])[..., None]  # [O,3,1]
        cell = torch.tensor([m.cell for m in models], device=device)
        dims = torch.tensor([m.dims for m in models], dtype=torch.int64, device=device)
        self.inv_cell = (1.0 / cell)[:, None, None]
        self.top = (dims - 1).to(torch.int32)[..., None]
        self.strides = torch.stack([dims[:, 1] * dims[:, 2], dims[:, 2], torch.ones_like(dims[:, 2])], -1)[..., None]
        self.lookup, offsets = _joined_lookups(models)
        self.lookup_offset = offsets[:, None]  # [O,1]
        self.points_normals = torch.cat([self.points, self.normals], -1).reshape(-1, 6).T.contiguous()  # [6,O*M]

    def rows(self, obj: torch.Tensor) -> "LookupRows":
        """The lookup's parameters for the rows of a batch whose models are ``obj [B]``."""
        return LookupRows(self.origin[obj], self.inv_cell[obj], self.top[obj], self.strides[obj], self.lookup_offset[obj])

    def nearest(self, X: torch.Tensor, rows: "LookupRows") -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest model point and its normal for object-frame points ``X [B,3,N]`` of the rows
        ``rows`` (:meth:`rows`): ``(q [B,3,N], n [B,3,N])``."""
        cell = ((X - rows.origin) * rows.inv_cell).to(torch.int32)  # cast, then clamp: NaN and overflow cast to < 0 (clamped first, they stay < 0)
        cell = torch.minimum(cell.clamp_min_(0), rows.top)
        flat = (cell * rows.strides).sum(1) + rows.offset  # [B,N]
        columns = self.lookup.index_select(0, flat.view(-1)).long()  # not take or []: docs/design_notes.md, 'verify: the tensors' layout'
        qn = self.points_normals.index_select(1, columns).view(6, *flat.shape)  # [6,B,N]
        return qn[:3].transpose(0, 1), qn[3:].transpose(0, 1)


class LookupRows(NamedTuple):
    """Per row of a batch, its model's lookup grid: lower corner ``[B,3,1]``, inverse cell size
    ``[B,1,1]``, last cell ``[B,3,1]``, strides ``[B,3,1]`` and offset into the joined lookup ``[B,1]``."""

    origin: torch.Tensor
    inv_cell: torch.Tensor
    top: torch.Tensor
    strides: torch.Tensor
    offset: torch.Tensor

    def kept(self, keep: torch.Tensor) -> "LookupRows":
        """The rows ``keep`` (a mask or indices)."""
        return LookupRows(*(x[keep] for x in self))


_JOINED: dict[tuple[int, ...], tuple[list[ModelGeometry], torch.Tensor, torch.Tensor]] = {}
_JOINED_LOCK = threading.Lock()


def _joined_lookups(models: list[ModelGeometry]) -> tuple[torch.Tensor, torch.Tensor]:
    """The lookups of the distinct ``models`` in one int32 tensor, each entry the column ``o * M + i`` of
    ``ModelBank.points_normals`` (``o`` the model's first row), and each row's offset into it
    ``[O]``. Kept for the last few model lists (the lookup tensors are megabytes; a frame's
    models rarely change)."""
    key = tuple(id(m) for m in models)
    with _JOINED_LOCK:
        if key in _JOINED:
            return _JOINED[key][1:]
        first = {}
        for o, m in enumerate(models):
            first.setdefault(id(m), o)
        distinct = [models[o] for o in first.values()]
        M = models[0].points.shape[0]
        sizes = torch.tensor([m.lookup.numel() for m in distinct], device=models[0].points.device)
        starts = dict(zip(first, (torch.cumsum(sizes, 0) - sizes).tolist()))
        if len(distinct) == 1:  # its rows start at 0: the model's own lookup, not a copy (a model's bank lives as long as it)
            lookup = distinct[0].lookup
        else:
            lookup = torch.cat([m.lookup + first[id(m)] * M for m in distinct])
        offsets = torch.tensor([starts[id(m)] for m in models], device=lookup.device)
        while len(_JOINED) >= 8:
            del _JOINED[next(iter(_JOINED))]
        _JOINED[key] = (list(models), lookup, offsets)  # holding the models keeps their ids unique
        return _JOINED[key][1:]


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[B,3,3]`` of rotation vectors ``w [B,3]``."""
    theta = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k0, k1, k2 = (w / theta).unbind(-1)
    zero = torch.zeros_like(k0)
    K = torch.stack([zero, -k2, k1, k2, zero, -k0, -k1, k0, zero], -1).view(-1, 3, 3)  # the cross-product matrix of the unit axis
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return _eye(3, w.dtype, w.device) + s * K + (1 - c) * (K @ K)


@functools.lru_cache(maxsize=16)
def _eye(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The identity ``[n,n]``, made once per dtype and device (ICP's steps use it thousands of times a second; never written to)."""
    return torch.eye(n, dtype=dtype, device=device)


def icp(
    bank: ModelBank,
    obj: torch.Tensor,
    source: torch.Tensor,
    valid: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    iterations: int = 30,
    method: str = "point_to_plane",
    tolerance: float = 1e-6,
    prior: float = 0.0,
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched ICP of observed points onto their models, from the poses ``(R, t)``.

    Args:
        bank: the models; ``obj [B]`` the model of each row.
        source: ``[B,N,3]`` camera-frame observed points; ``valid [B,N]`` marks real ones (padding False).
        R, t: ``[B,3,3]``, ``[B,3]`` object -> camera start poses.
        iterations: the most Gauss-Newton (point-to-plane) or Kabsch (point-to-point) steps;
            stops early when no row moves by more than ``tolerance`` (rad or m).
        prior: point-to-plane only: a pull of the pose back toward its start, weighted by this
            share of the data term's mean curvature (per rotation and per translation axis). It
            holds the directions that the points leave free (a cylinder's turn about its axis)
            where the start put them, and barely moves the others (0 = plain ICP).
        anchor: ``([B,3,3], [B,3])`` poses that ``prior`` pulls toward instead of the start.

    Returns:
        ``(R, t, fitness, rmse)``: the refined poses, the share of valid points with a model point
        within the model's correspondence distance, and those correspondences' RMS distance (m;
        inf with none). As Open3D's ``registration_icp`` with the same settings, up to the
        lookup's cell size in which model point is nearest.
    """
    A, b = R.transpose(1, 2).clone(), -(R.transpose(1, 2) @ t[..., None])[..., 0]  # camera -> object
    if anchor is None:
        A0, b0 = A.clone(), b.clone()
    else:
        A0 = anchor[0].transpose(1, 2)
        b0 = -(A0 @ anchor[1][..., None])[..., 0]
    source = source.transpose(1, 2).contiguous()  # [B,3,N]
    limit = bank.max_distance[obj, None]
    active = torch.arange(len(obj), device=obj.device)  # rows still moving
    rows = (bank.rows(obj), source, valid, limit, A0, b0)  # of the active rows
    A_a, b_a = A, b  # the active rows' transforms (A itself while every row moves)
    for _ in range(iterations):
        if not len(active):
            break
        change = _change(A_a, b_a, *rows[4:]) if prior else None
        dR, dt, step = _icp_step(bank, *rows[:4], A_a, b_a, method, prior, change)
        A_a, b_a = dR @ A_a, (dR @ b_a[..., None])[..., 0] + dt
        moving = step > tolerance
        if not bool(moving.all()):
            A[active], b[active] = A_a, b_a
            active, A_a, b_a = active[moving], A_a[moving], b_a[moving]
            rows = (rows[0].kept(moving),) + tuple(x[moving] for x in rows[1:])
    if A_a is not A:  # else no step was taken and A holds the start
        A[active], b[active] = A_a, b_a
    X = torch.baddbmm(b[..., None], A, source)
    q, _ = bank.nearest(X, bank.rows(obj))
    d = (X - q).square().sum(1).sqrt()  # not norm(dim=1), which is slow along a middle dimension
    inlier = valid & (d < limit)
    count = inlier.sum(-1)
    fitness = count / valid.sum(-1).clamp_min(1)
    rmse = torch.where(count > 0, ((d * inlier) ** 2).sum(-1).div(count.clamp_min(1)).sqrt(), torch.full_like(fitness, float("inf")))
    R_out = A.transpose(1, 2)
    return R_out, -(R_out @ b[..., None])[..., 0], fitness, rmse


def _change(A: torch.Tensor, b: torch.Tensor, A0: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
    """The motion ``[B,6]`` (small-angle rotation vector, translation) from the camera -> object
    transforms ``(A0, b0)`` to ``(A, b)``, in the object frame where ICP's increments act."""
    D = A @ A0.transpose(1, 2)
    w = 0.5 * torch.stack([D[:, 2, 1] - D[:, 1, 2], D[:, 0, 2] - D[:, 2, 0], D[:, 1, 0] - D[:, 0, 1]], -1)
    return torch.cat([w, b - (D @ b0[..., None])[..., 0]], -1)


def _icp_step(bank, lookup_rows, source, valid, limit, A, b, method, prior=0.0, change=None):
    """One ICP step of every row (``source [B,3,N]``, camera frame; ``lookup_rows``: :meth:`ModelBank.rows`): the increment ``(dR [B,3,3],
    dt [B,3])`` that moves the camera -> object transform ``(A, b)`` to ``(dR A, dR b + dt)``, and
    each row's step size; with ``prior``, the step also pulls the row's ``change`` since the start
    (:func:`_change`) back."""
    X = torch.baddbmm(b[..., None], A, source)  # [B,3,N] object frame
    q, n = bank.nearest(X, lookup_rows)
    w = (valid & ((X - q).square().sum(1) < limit * limit)).to(X.dtype)
    if method == "point_to_plane":  # Gauss-Newton on (X + w x X + tau - q) . n, small angles
        J, r = _point_to_plane(X, q, n, w)
        H = (J @ J.transpose(1, 2)).double() + 1e-12 * _eye(6, torch.float64, X.device)
        g = (J @ r[..., None]).double()[..., 0]
        if prior:
            diag = torch.diagonal(H, dim1=1, dim2=2)
            lam = prior * torch.cat([diag[:, :3].mean(-1, keepdim=True).expand(-1, 3), diag[:, 3:].mean(-1, keepdim=True).expand(-1, 3)], -1)
            H = H + torch.diag_embed(lam)
            g = g + lam * change.double()
        delta = -torch.linalg.solve_ex(H, g[..., None])[0][..., 0]
        delta = delta.masked_fill(w.sum(-1, keepdim=True) < 6, 0.0).to(X.dtype)
        return _rodrigues(delta[:, :3]), delta[:, 3:], delta.abs().amax(-1)
    if method == "point_to_point":  # Kabsch on the weighted correspondences
        eye = _eye(3, X.dtype, X.device)
        count = w.sum(-1, keepdim=True).clamp_min(1)
        mx = (X * w[:, None]).sum(-1) / count
        mq = (q * w[:, None]).sum(-1) / count
        C = ((X - mx[..., None]) * w[:, None]) @ (q - mq[..., None]).transpose(1, 2)
        U, _, Vh = torch.linalg.svd(C.double())
        d = torch.det(Vh.transpose(1, 2) @ U.transpose(1, 2))
        D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        dR = (Vh.transpose(1, 2) @ D @ U.transpose(1, 2)).to(X.dtype)
        ok = (count[:, 0] >= 3)[:, None, None]
        dR = torch.where(ok, dR, eye.expand_as(dR))
        dt = torch.where(ok[:, 0], mq - (dR @ mx[..., None])[..., 0], torch.zeros_like(mq))
        return dR, dt, torch.maximum((dR - eye).abs().flatten(1).amax(-1), dt.abs().amax(-1))
    raise ValueError(f"unknown ICP method {method!r}")


def _point_to_plane(X: torch.Tensor, q: torch.Tensor, n: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The point-to-plane system of observed points ``X [B,3,N]`` (object frame) against their
    model correspondences ``q`` with normals ``n``, weighted by ``w [B,N]``: the Jacobian
    ``[B,6,N]`` of the residuals with respect to a small turn and shift of the camera -> object
    transform, and the residuals ``[B,N]`` (metres)."""
    (x0, x1, x2), (n0, n1, n2) = X.unbind(1), n.unbind(1)
    J = torch.stack([x1 * n2 - x2 * n1, x2 * n0 - x0 * n2, x0 * n1 - x1 * n0, n0, n1, n2], 1) * w[:, None]  # X x n, n
    return J, ((X - q) * n).sum(1) * w


def pose_covariance(model: ModelGeometry, observed: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """The covariance ``(6, 6)`` of a pose fitted to observed points, as ROS's
    ``PoseWithCovariance`` orders it: shifts along the camera's x, y, z (m), then turns about them (rad).

    The point-to-plane fit's Gauss-Newton estimate: ``sigma^2 (J^T J)^-1`` over the observed points
    ``(N, 3)`` (camera frame, metres) within the model's correspondence distance of the posed
    model, ``sigma^2`` their residuals' variance, moved from the fit's object-frame increments to
    the camera frame. It grows with depth noise (``sigma``) and with occlusion (fewer points, and
    directions the visible part leaves free, such as a cylinder's turn about its axis). None with
    fewer than 7 correspondences or a singular system.
    """
    device = model.points.device
    bank = model.bank
    obj = torch.zeros(1, dtype=torch.int64, device=device)
    Rt = torch.as_tensor(np.asarray(R).T, dtype=torch.float32, device=device)[None]
    b = -(Rt @ torch.as_tensor(np.asarray(t), dtype=torch.float32, device=device).reshape(1, 3, 1))[..., 0]
    X = torch.baddbmm(b[..., None], Rt, torch.as_tensor(np.asarray(observed), dtype=torch.float32, device=device).T[None])
    q, n = bank.nearest(X, bank.rows(obj))
    w = ((X - q).square().sum(1) < bank.max_distance[obj, None] ** 2).to(X.dtype)
    count = int(w.sum())
    if count < 7:
        return None
    J, r = _point_to_plane(X, q, n, w)
    H = (J[0] @ J[0].T).double().cpu().numpy()
    if np.linalg.cond(H) > 1e12:
        return None
    sigma2 = float((r.double() ** 2).sum()) / (count - 6)
    cov = sigma2 * np.linalg.inv(H)  # of (turn, shift) of camera -> object, object frame
    R = np.asarray(R, np.float64)
    M = np.zeros((6, 6))  # (turn w, shift tau) -> (shift of t, turn) in the camera frame: t' = t - R tau, turn -R w
    M[:3, 3:], M[3:, :3] = -R, -R
    return M @ cov @ M.T


@dataclass
class DepthEvidence:
    """A frame's depth and the instances' masks, on the device, for :func:`score_poses`.

    Both images have a border of one pixel, so that a projection clamped to just outside the
    image reads "no reading" there without a bounds test.

    Attributes:
        signed_depth: ``[S,H+2,W+2]`` float32, per instance (slot): the measured depth in metres
            inside its mask, minus it outside, 0 without a reading (one gather gives both).
        cell_of_pixel: ``[S,H+2,W+2]`` int64, the mask-grid cell (``row * GW + col``) of each
            pixel of the slot's mask (0 elsewhere; only mask pixels are read).
        K: ``[3,3]`` float32 intrinsics.
        occupied: ``[S,GH,GW]`` bool, each slot's mask grid (:func:`~densefusion_ros.icp.mask_grid`),
            zero-padded; ``occupied_count [S]`` its cells.
        plane: ``[4]`` the support plane ``(n, d)`` (:func:`~densefusion_ros.support_plane.support_plane`),
            or None: model points below it count as violating in :func:`depth_terms`.
    """

    signed_depth: torch.Tensor
    cell_of_pixel: torch.Tensor
    K: torch.Tensor
    occupied: torch.Tensor
    occupied_count: torch.Tensor
    plane: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        depth_m: np.ndarray,
        K: np.ndarray,
        masks: list[np.ndarray],
        device: torch.device | str,
        cells: int = 1024,
        plane: np.ndarray | None = None,
    ) -> "DepthEvidence":
        """From a depth image ``(H, W)`` (metres), ``K (3, 3)`` and one ``(H, W)`` mask per instance,
        each on a coverage grid of about ``cells`` cells (:func:`~densefusion_ros.icp.mask_grid`),
        and the frame's support plane ``(4,)`` or None."""
        depth = np.asarray(depth_m, np.float32)
        depth = np.where((depth > 0) & (depth < np.inf), depth, np.float32(0))  # no reading (NaN, inf, <= 0) -> 0
        H, W = depth.shape
        masks = [np.asarray(m, bool) for m in masks]
        grids = [mask_grid(m, depth, cells) for m in masks]
        GH = max([g[3].shape[0] for g in grids if g is not None], default=1)
        GW = max([g[3].shape[1] for g in grids if g is not None], default=1)
        occupied = np.zeros((len(masks), GH, GW), bool)
        signed = np.zeros((len(masks), H + 2, W + 2), np.float32)
        cell_of_pixel = np.zeros((len(masks), H + 2, W + 2), np.int64)
        for s, (m, g) in enumerate(zip(masks, grids)):
            np.negative(depth, out=signed[s, 1:-1, 1:-1])  # written in place: no whole-image temporaries
            np.copyto(signed[s, 1:-1, 1:-1], depth, where=m)
            if g is not None:  # the cells of the mask's bounding box, which its grid spans
                r0, c0, cell, grid = g
                occupied[s, : grid.shape[0], : grid.shape[1]] = grid
                r1, c1 = min(H, r0 + grid.shape[0] * cell), min(W, c0 + grid.shape[1] * cell)
                rows, cols = np.arange(r1 - r0)[:, None] // cell, np.arange(c1 - c0)[None] // cell
                cell_of_pixel[s, 1 + r0 : 1 + r1, 1 + c0 : 1 + c1] = np.where(m[r0:r1, c0:c1], rows * GW + cols, 0)
        on = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return cls(
            signed_depth=on(signed), cell_of_pixel=on(cell_of_pixel),
            K=torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device),
            occupied=on(occupied), occupied_count=on(occupied.reshape(len(masks), -1).sum(-1)),
            plane=None if plane is None else torch.as_tensor(np.asarray(plane), dtype=torch.float32, device=device),
        )  # fmt: skip


def score_poses(
    evidence: DepthEvidence,
    points: torch.Tensor,
    slot: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    tolerance: float = 0.01,
    violation_weight: float = 3.0,
    coverage_weight: float = 0.0,
) -> torch.Tensor:
    """:func:`~densefusion_ros.icp.depth_consistency` of many poses at once: ``[P]``.

    ``points [P,M,3]`` (object frame) posed by ``R [P,3,3]``, ``t [P,3]``, each scored against
    the mask of instance ``slot [P]``: ``(supported - w * violating) / M + c * coverage``
    (:func:`depth_terms`).
    """
    terms = depth_terms(evidence, points, slot, R, t, tolerance, with_coverage=bool(coverage_weight))
    return score_of_terms(*terms, violation_weight, coverage_weight)


def score_of_terms(
    supported: torch.Tensor, violating: torch.Tensor, coverage: torch.Tensor, violation_weight: float, coverage_weight: float
) -> torch.Tensor:
    """The score from :func:`depth_terms`' parts: ``supported - w * violating + c * coverage``."""
    return supported - violation_weight * violating + coverage_weight * coverage


def depth_terms(
    evidence: DepthEvidence,
    points: torch.Tensor,
    slot: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    tolerance: float = 0.01,
    with_coverage: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parts of the depth check, each ``[P]``: the shares of the ``M`` posed model points
    that are *supported* (inside the slot's mask, within ``tolerance`` of the measured depth) and
    *violating* (more than ``tolerance`` in front of a measured depth: the camera sees through
    them; or more than ``tolerance`` below the evidence's support plane), and the mask's
    *coverage* by supported points (zeros when not ``with_coverage``).
    Points behind the surface and without a reading count for nothing."""
    posed = _posed_points(evidence, points, slot, R, t, tolerance)
    M = points.shape[1]
    coverage = _coverage(evidence, slot, posed.pix, posed.supported) if with_coverage else torch.zeros(len(slot), device=R.device)
    return posed.supported.count_nonzero(-1) / M, posed.violating.count_nonzero(-1) / M, coverage


def seen_violation(
    evidence: DepthEvidence, points: torch.Tensor, slot: torch.Tensor, R: torch.Tensor, t: torch.Tensor, tolerance: float = 0.01
) -> torch.Tensor:
    """The share ``[P]`` of the posed model points that the camera would see (those of the posed
    model's own front surface: within ``tolerance`` of its nearest point in their cell of
    :data:`SEEN_CELL` pixels) and that has a depth reading, which is *violating* (:func:`depth_terms`).
    :func:`depth_terms` divides by all ``M`` points, of which a view shows a third to a half, and
    less for a flat object seen edge-on or a ring seen from above: a pose sunk into a surface of
    its colour (a torus inside a box's face) has a few percent of all its points in front of the
    depth, but a quarter of those the camera sees."""
    posed = _posed_points(evidence, points, slot, R, t, tolerance)
    _, H2, W2 = evidence.signed_depth.shape
    row, col = (posed.pix % (H2 * W2)).div(W2, rounding_mode="floor") // SEEN_CELL, (posed.pix % W2) // SEEN_CELL
    columns = -(-W2 // SEEN_CELL)
    cell = row * columns + col
    nearest = torch.full((len(slot), -(-H2 // SEEN_CELL) * columns), float("inf"), device=R.device)
    nearest.scatter_reduce_(1, cell, torch.where(posed.z > 1e-6, posed.z, float("inf")), "amin")  # behind the camera: hides nothing
    seen = posed.read & (posed.z <= nearest.gather(1, cell) + tolerance)
    return (posed.violating & seen).count_nonzero(-1) / seen.count_nonzero(-1).clamp_min(1)


SEEN_CELL = 4
""":func:`seen_violation` finds the posed model's front surface on cells of 4 x 4 pixels: a model's
2000 points put a few in each cell of a silhouette of several thousand pixels, so that the points
behind the front one find it in their cell."""


class _Posed(NamedTuple):
    """Posed model points against the evidence, each ``[P,M]``: their flat index into the slot's
    evidence images ``pix``, depth ``z`` (m), whether the image has a depth reading there
    (``read``), and whether they are *supported* and *violating* (:func:`depth_terms`)."""

    pix: torch.Tensor
    z: torch.Tensor
    read: torch.Tensor
    supported: torch.Tensor
    violating: torch.Tensor


def _posed_points(evidence: DepthEvidence, points: torch.Tensor, slot: torch.Tensor, R: torch.Tensor, t: torch.Tensor, tolerance: float) -> _Posed:
    """``points [P,M,3]`` (object frame) posed by ``R [P,3,3]``, ``t [P,3]`` and read against the
    evidence of ``slot [P]``: the one rule of supported and violating points."""
    # one product per pose: object points to homogeneous pixels (u z, v z, z) and, with a plane,
    # their height above it: n . (R p + t) + d = p . (R^T n) + (n . t + d). Coordinates first
    # ([P,3|4,M]): a product with the long side last, and each coordinate a contiguous row.
    KR = evidence.K @ R  # [P,3,3]
    Kt = (evidence.K @ t[..., None])[..., 0]  # [P,3]
    if evidence.plane is not None:
        n = evidence.plane[:3]
        KR = torch.cat([KR, (n @ R)[:, None]], 1)
        Kt = torch.cat([Kt, (t @ n + evidence.plane[3])[:, None]], 1)
    X = torch.baddbmm(Kt[..., None], KR, points.transpose(1, 2))
    S, H2, W2 = evidence.signed_depth.shape
    z = X[:, 2]
    uv = (X[:, :2] / z.clamp_min(1e-6)[:, None]).round_()  # behind the camera: far off the image
    pix = uv[:, 1].clamp_(-1, H2 - 2).mul_(W2).add_(uv[:, 0].clamp_(-1, W2 - 2)).long()  # exact: < 2^24
    pix += (slot * (H2 * W2) + W2 + 1)[:, None]  # -1 and W (H) fall on the border, which reads 0
    signed = evidence.signed_depth.take(pix)  # > 0 in the mask, < 0 outside, 0 = no reading
    supported = (signed > 0) & ((z - signed).abs_() < tolerance)
    violating = (z > 1e-6) & (z < signed.abs().sub_(tolerance))
    if evidence.plane is not None:
        violating |= X[:, 3] < -tolerance
    return _Posed(pix, z, signed != 0, supported, violating)


def _coverage(evidence: DepthEvidence, slot: torch.Tensor, pix: torch.Tensor, supported: torch.Tensor) -> torch.Tensor:
    """Share of each pose's mask-grid cells that its supported pixels (flat indices ``pix [P,M]``
    into the evidence, all inside the slot's mask) reach, hits spread to the 8 neighbouring cells: ``[P]``."""
    P = slot.shape[0]
    GH, GW = evidence.occupied.shape[1:]
    cell = torch.where(supported, evidence.cell_of_pixel.take(pix), GH * GW)  # not supported: a spare cell
    hit = torch.zeros(P, GH * GW + 1, dtype=torch.bool, device=pix.device).scatter_(1, cell, True)
    hit = hit[:, :-1].view(P, GH, GW)
    grown = hit.clone()  # the 3 x 3 dilation, one axis at a time
    grown[:, 1:] |= hit[:, :-1]
    grown[:, :-1] |= hit[:, 1:]
    hit = grown.clone()
    hit[:, :, 1:] |= grown[:, :, :-1]
    hit[:, :, :-1] |= grown[:, :, 1:]
    return (evidence.occupied[slot] & hit).flatten(1).count_nonzero(-1) / evidence.occupied_count[slot].clamp_min(1)


@dataclass
class VerifyInput:
    """One instance to verify: its model, observed points, network pose and slot in the evidence."""

    model: ModelGeometry
    observed: np.ndarray  # (N, 3) camera frame, metres
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)
    slot: int


_AXES = np.concatenate([np.eye(3), -np.eye(3)])
CLIMB_SWEEPS = 30
"""Most sweeps of each climb stage (:func:`climb`): a sweep that raises nothing ends it sooner."""

_CLIMB_STAGES = tuple(  # turns of 8, 4, 2 degrees about +-x, y, z and shifts of 4, 2, 2 mm
    (Rotation.from_rotvec(np.radians(degrees) * _AXES).as_matrix(), metres * _AXES)
    for degrees, metres in ((8.0, 0.004), (4.0, 0.002), (2.0, 0.002))
)


def padded(clouds: list[np.ndarray], rows: list[int], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds ``rows`` of ``clouds`` as one ``[B,N,3]`` zero-padded tensor and its validity mask."""
    N = max(1, max((len(clouds[i]) for i in rows), default=1))
    out = np.zeros((len(rows), N, 3), np.float32)
    valid = np.zeros((len(rows), N), bool)
    for j, i in enumerate(rows):
        out[j, : len(clouds[i])], valid[j, : len(clouds[i])] = clouds[i], True
    return torch.as_tensor(out, device=device), torch.as_tensor(valid, device=device)


@dataclass
class Hypotheses:
    """Scored candidate poses of the instances of one verification, after its coarse ICP (steps
    1-3 of the module docstring): ``obj [H]`` the input of each, ``slot [H]`` its mask in the
    evidence, ``R [H,3,3]``, ``t [H,3]`` (object -> camera, metres) and ``score [H]``
    (:func:`score_poses`; only poses that ICP accepted)."""

    obj: torch.Tensor
    slot: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    score: torch.Tensor


def verify_instances(
    inputs: list[VerifyInput],
    evidence: DepthEvidence,
    options: IcpOptions,
    coarse_points: int = 600,
    max_sweeps: int = CLIMB_SWEEPS,
) -> list[IcpResult]:
    """Hypothesise and verify every instance of a frame in batched tensor code (module docstring):
    :func:`propose`, then :func:`conclude`.

    Returns one :class:`~densefusion_ros.icp.IcpResult` per input: the winner after the final
    ICP with its share of violating model points, accepted unless that share exceeds
    ``options.verify_max_violation``, and that share of the points the camera would see
    (:func:`seen_violation`, which the pipeline checks); or the input pose, not accepted, when ICP accepted no start
    (fitness below ``options.min_fitness``) or the instance has fewer than 3 observed points, with
    its violating share measured too (the pipeline checks every pose it publishes).
    """
    if not inputs:
        return []
    bank = ModelBank([x.model for x in inputs])
    hypotheses = propose(inputs, bank, evidence, options, coarse_points)
    return conclude(inputs, hypotheses, bank, evidence, options, max_sweeps)


def propose(inputs: list[VerifyInput], bank: ModelBank, evidence: DepthEvidence, options: IcpOptions, coarse_points: int = 600) -> Hypotheses:
    """Steps 1-3 of the module docstring: the starts of every input (``bank``: their models, one
    row each), screened, coarse ICP and scored; the results that ICP accepted."""
    device = evidence.signed_depth.device
    rotations = torch.as_tensor(group_rotations(options.rotation_group, options.init_rotations), dtype=torch.float32, device=device)
    usable = [i for i, x in enumerate(inputs) if len(x.observed) >= 3]
    coarse = [_thinned(x.observed, coarse_points) for x in inputs]
    # 1. starts: per instance, turns about the model centre at the network's and the observed centre
    obj_rows, R0s, t0s = [], [], []
    for i in usable:
        x = inputs[i]
        R = torch.as_tensor(x.R, dtype=torch.float32, device=device)
        t = torch.as_tensor(x.t, dtype=torch.float32, device=device).reshape(3)
        centres = [t]
        if options.verify_centroid_starts:
            t_obs = torch.as_tensor(centroid_translation(x.observed, x.model.points.cpu().numpy(), x.R), dtype=torch.float32, device=device)
            if float((t_obs - t).norm()) > x.model.max_distance:  # else both would end alike
                centres.append(t_obs)
        Rs = R @ rotations
        c = x.model.centre
        for tc in centres:
            obj_rows += [i] * len(rotations)
            R0s.append(Rs)
            t0s.append(tc + R @ c - Rs @ c)
    if not obj_rows:
        return _no_hypotheses(device)
    obj = torch.as_tensor(obj_rows, device=device)
    R, t = torch.cat(R0s), torch.cat(t0s)
    slots = torch.as_tensor([inputs[i].slot for i in obj_rows], device=device)
    if options.verify_screen_points > 0:  # 2a. a short ICP of every start on a few points; keep the best few
        screen = [_thinned(x.observed, options.verify_screen_points) for x in inputs]
        source, valid = padded(screen, obj_rows, device)
        R, t, fitness, _ = icp(bank, obj, source, valid, R, t, options.verify_screen_iterations, options.verify_method)
        score = _accepted_scores(evidence, bank, obj, slots, R, t, fitness, options)
        keep = _distinct_per_instance(bank, obj, R, t, score, options.verify_keep, apart=0.005, pool=64)
        if not len(keep):
            return _no_hypotheses(device)
        obj, slots, R, t = obj[keep], slots[keep], R[keep], t[keep]
    # 2. coarse ICP of every (kept) start
    source, valid = padded(coarse, obj.tolist(), device)
    R, t, fitness, _ = icp(bank, obj, source, valid, R, t, options.max_iterations, options.verify_method)
    # 3. score every accepted result
    score = _accepted_scores(evidence, bank, obj, slots, R, t, fitness, options)
    kept = torch.isfinite(score)
    return Hypotheses(obj[kept], slots[kept], R[kept], t[kept], score[kept])


def conclude(
    inputs: list[VerifyInput], hypotheses: Hypotheses, bank: ModelBank, evidence: DepthEvidence, options: IcpOptions, max_sweeps: int = CLIMB_SWEEPS
) -> list[IcpResult]:
    """Steps 4-5 of the module docstring from ``hypotheses`` (:func:`propose`'s, of the same
    ``inputs``, ``bank`` and ``evidence``: its rows index them): the climb, then the final ICP of
    each input's best pose on its observed points; the results as :func:`verify_instances`'."""
    obj, slots, R, t, score = hypotheses.obj, hypotheses.slot, hypotheses.R, hypotheses.t, hypotheses.score
    weights = options.score_weights
    # 4. climb from the best distinct results of each instance
    picks = _distinct_per_instance(bank, obj, R, t, score, max(1, options.verify_climb))
    climbing, clear = (_near_ties(obj, score, picks, options.verify_climb_margin) if options.verify_climb_margin > 0
                       else (picks, picks[:0]))  # fmt: skip
    if options.verify_climb > 0 and climbing.numel():
        R_c, t_c, s_c = climb(evidence, bank, obj[climbing], slots[climbing], R[climbing], t[climbing], score[climbing], weights, max_sweeps)
        R, t, score, obj_c = (torch.cat([a, b[clear]]) for a, b in ((R_c, R), (t_c, t), (s_c, score), (obj[climbing], obj)))
    else:
        R, t, score, obj_c = R[picks], t[picks], score[picks], obj[picks]
    # 5. final ICP of each instance's best pose on all its observed points
    best_rows, results = [], {}
    for i in range(len(inputs)):  # hypotheses hold only inputs with 3 or more observed points
        rows = (obj_c == i).nonzero()[:, 0]
        if len(rows) and torch.isfinite(score[rows]).any():
            best_rows.append(int(rows[score[rows].argmax()]))
    if best_rows:
        final_obj = obj_c[best_rows]
        final_src, final_valid = padded([x.observed for x in inputs], final_obj.tolist(), device=R.device)
        Rf, tf, ff, ef = icp(bank, final_obj, final_src, final_valid, R[best_rows], t[best_rows], options.max_iterations, options.verify_method)
        fitted = (ff >= options.min_fitness) & (ff > 0)
        Rf = torch.where(fitted[:, None, None], Rf, R[best_rows])
        tf = torch.where(fitted[:, None], tf, t[best_rows])
        slots_f = _slots(inputs, final_obj)
        _, violating, _ = depth_terms(evidence, bank.points[final_obj], slots_f, Rf, tf, options.verify_tolerance, with_coverage=False)
        seen = seen_violation(evidence, bank.points[final_obj], slots_f, Rf, tf, options.verify_tolerance)
        for j, i in enumerate(final_obj.tolist()):
            accepted = bool(fitted[j]) and float(violating[j]) <= options.verify_max_violation
            results[i] = IcpResult(
                Rf[j].double().cpu().numpy(), tf[j].double().cpu().numpy(), float(ff[j]), float(ef[j]), accepted, float(violating[j]), float(seen[j])
            )
    return _with_unaccepted(inputs, results, evidence, bank, options)


def _no_hypotheses(device: torch.device) -> Hypotheses:
    """No candidate: :func:`conclude` then returns every input's own pose, not accepted."""
    none = torch.zeros(0, dtype=torch.int64, device=device)
    return Hypotheses(none, none, torch.zeros(0, 3, 3, device=device), torch.zeros(0, 3, device=device), torch.zeros(0, device=device))


def _thinned(points: np.ndarray, count: int) -> np.ndarray:
    """At most about ``count`` of ``points``, evenly strided."""
    return points[:: max(1, -(-len(points) // max(1, count)))]


def _accepted_scores(evidence, bank, obj, slots, R, t, fitness, options: IcpOptions) -> torch.Tensor:
    """:func:`score_poses` of ICP results, ``-inf`` where ICP's fitness is below ``options.min_fitness``."""
    weights = options.score_weights
    score = score_poses(evidence, bank.points[obj], slots, R, t, *weights)
    return torch.where(fitness >= options.min_fitness, score, torch.full_like(score, -float("inf")))


def _slots(inputs: list[VerifyInput], rows: torch.Tensor) -> torch.Tensor:
    """The evidence slots ``[B]`` of the inputs ``rows [B]``."""
    return torch.as_tensor([inputs[i].slot for i in rows.tolist()], dtype=torch.int64, device=rows.device)


def _with_unaccepted(inputs: list[VerifyInput], results: dict[int, IcpResult], evidence, bank: ModelBank, options: IcpOptions) -> list[IcpResult]:
    """``results`` (input index -> result) completed with the input pose, not accepted, for every
    input without one (no start passed ICP's fitness, or too few observed points); its
    ``violating`` share is measured too, so that the pipeline's depth check applies to it."""
    missing = [i for i in range(len(inputs)) if i not in results]
    if missing:
        rows = torch.as_tensor(missing, dtype=torch.int64, device=bank.points.device)
        R = torch.as_tensor(np.stack([np.asarray(inputs[i].R) for i in missing]), dtype=torch.float32, device=rows.device)
        t = torch.as_tensor(np.stack([np.asarray(inputs[i].t).reshape(3) for i in missing]), dtype=torch.float32, device=rows.device)
        _, violating, _ = depth_terms(evidence, bank.points[rows], _slots(inputs, rows), R, t, options.verify_tolerance, with_coverage=False)
        for k, i in enumerate(missing):
            x = inputs[i]
            results[i] = IcpResult(
                np.asarray(x.R, np.float64), np.asarray(x.t, np.float64).reshape(3), 0.0, float("inf"), False, float(violating[k])
            )
    return [results[i] for i in range(len(inputs))]


def _distinct_per_instance(
    bank: ModelBank, obj: torch.Tensor, R: torch.Tensor, t: torch.Tensor, score: torch.Tensor, count: int, apart: float = 0.002, pool: int = 32
) -> torch.Tensor:
    """Row indices of each instance's best ``count`` scored results whose posed model points lie
    more than ``apart`` (mean distance, metres) from those of every better one taken: starts that
    converged to the same pose are climbed once. Only the best ``pool`` of each instance are considered."""
    picks = []
    sub = bank.points[:, :: max(1, bank.points.shape[1] // 100)]  # 100 points tell poses 2 mm apart
    for i in torch.unique(obj).tolist():
        rows = (obj == i).nonzero()[:, 0]
        rows = rows[torch.isfinite(score[rows])]
        rows = rows[score[rows].argsort(descending=True)][:pool]
        if not len(rows):
            continue
        X = sub[i] @ R[rows].transpose(1, 2) + t[rows, None]  # [p,m,3]
        D = (X[:, None] - X[None]).norm(dim=-1).mean(-1).cpu().numpy()
        taken: list[int] = []
        for j in range(len(rows)):
            if all(D[j, k] > apart for k in taken):
                taken.append(j)
                if len(taken) == count:
                    break
        picks += rows[taken].tolist()
    return torch.as_tensor(picks, dtype=torch.int64, device=obj.device)


def _near_ties(obj: torch.Tensor, score: torch.Tensor, picks: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``picks`` (each instance's distinct best results, best first) split into those that climb
    (every pick of an instance whose best leads its second by at most ``margin``) and the best
    result of each instance with a clear lead, which does not."""
    climbing, clear = [], []
    for i in torch.unique(obj[picks]).tolist():
        rows = picks[obj[picks] == i]
        if len(rows) > 1 and float(score[rows[0]] - score[rows[1]]) <= margin:
            climbing += rows.tolist()
        else:
            clear.append(int(rows[0]))
    as_rows = lambda r: torch.as_tensor(r, dtype=torch.int64, device=picks.device)  # noqa: E731
    return as_rows(climbing), as_rows(clear)


def climb(
    evidence: DepthEvidence,
    bank: ModelBank,
    obj: torch.Tensor,
    slot: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    score: torch.Tensor,
    weights: tuple[float, float, float],
    max_sweeps: int = CLIMB_SWEEPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coordinate ascent of the score from each candidate pose, as
    :func:`densefusion_ros.icp._climb` does it for one (a move is kept as soon as it raises the
    score; per stage of ``_CLIMB_STAGES``, sweeps of the turns about the model's centre, then the
    shifts, until a sweep raises nothing or ``max_sweeps``), for all candidates at once.

    Each call scores, for every candidate, all the moves left in its sweep from its current pose:
    the first that raises the score is the move the sequential ascent would keep (the ones before
    it were scored from the same pose), and the ascent goes on after it from the new pose. The
    same poses as scoring one move at a time, in a few calls per sweep instead of one per move
    (docs/design_notes.md, "verify: the climb's calls").

    Args: ``obj [C]`` rows of ``bank``; ``slot [C]`` masks of ``evidence``; ``R [C,3,3]``,
    ``t [C,3]`` (object -> camera, metres) with their ``score [C]``; ``weights``:
    :func:`score_poses`' ``(tolerance, violation_weight, coverage_weight)``.
    Returns the climbed ``(R, t, score)``."""
    device = R.device
    R, t, score = R.clone(), t.clone(), score.clone()
    centre = bank.centre[obj]  # [C,3]
    points = bank.points[obj]
    eye = torch.eye(3, dtype=R.dtype, device=device)
    for turns, shifts in _CLIMB_STAGES:
        turns = torch.as_tensor(turns, dtype=R.dtype, device=device)
        shifts = torch.as_tensor(shifts, dtype=R.dtype, device=device)
        move_R = torch.cat([turns, eye.expand(len(shifts), 3, 3)])  # [m,3,3]: turns, then shifts
        move_t = torch.cat([torch.zeros_like(shifts[: len(turns)]), shifts])  # [m,3]
        n_moves = len(move_R)
        cursor = torch.zeros(len(R), dtype=torch.int64, device=device)  # the next move of the sweep
        sweeps = torch.zeros(len(R), dtype=torch.int64, device=device)
        improved = torch.zeros(len(R), dtype=torch.bool, device=device)
        active = torch.full((len(R),), max_sweeps > 0, dtype=torch.bool, device=device)
        moves = torch.arange(n_moves, device=device)
        while bool(active.any()):
            rows = active.nonzero()[:, 0]
            left = moves[None] >= cursor[rows, None]  # [r,m]: the moves still to score in each sweep
            local, move = left.nonzero(as_tuple=True)  # row-major: each row's moves in order
            r = rows[local]
            R2 = R[r] @ move_R[move]
            t2 = t[r] + ((R[r] - R2) @ centre[r, :, None])[..., 0] + move_t[move]
            s = score_poses(evidence, points[r], slot[r], R2, t2, *weights)
            key = torch.where(s > score[r], move, torch.full_like(move, n_moves))
            first = torch.full((len(rows),), n_moves, dtype=torch.int64, device=device).scatter_reduce(0, local, key, "amin")
            kept = first < n_moves
            start = torch.cumsum(left.sum(1), 0) - left.sum(1)  # each row's first pair
            pair = (start + first - cursor[rows])[kept]
            up = rows[kept]
            R[up], t[up], score[up] = R2[pair], t2[pair], s[pair]
            improved[up] = True
            cursor[up] = first[kept] + 1
            done = rows[~kept | (cursor[rows] >= n_moves)]  # the sweep is over
            sweeps[done] += 1
            again = done[improved[done] & (sweeps[done] < max_sweeps)]
            active[done] = False
            active[again], cursor[again], improved[again] = True, 0, False
    return R, t, score
