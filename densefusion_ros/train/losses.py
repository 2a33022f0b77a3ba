"""The published DenseFusion losses (``lib/loss.py``, ``lib/loss_refiner.py``), batched.

Conventions (see :mod:`densefusion_ros.geometry`): quaternions are w-first, a pose maps object
points to the camera as ``R m + t``, everything is in metres.

Estimator loss, per sample and per point hypothesis ``i`` (``N`` of them):

* ``R_i`` from the normalised quaternion, ``t_i = p_i + dt_i`` (the head predicts an offset);
* ``dis_i = mean_j || R_i m_j + t_i - target_j ||`` (ADD), or for symmetric objects the nearest
  target point of every predicted point replaces ``target_j`` (ADD-S, nearest neighbour from the
  prediction to the target, as the published KNN did);
* ``loss = mean_i (dis_i c_i - w log c_i)``.

The nearest neighbours of all ``N x M`` predicted points are found under ``no_grad`` with one
batched matmul per chunk (``|t|^2 - 2 q.t``, the expanded squared-norm form that ``torch.cdist``
uses for large inputs; on CUDA) or scipy's cKDTree (on CPU, where the matmul is memory-bound
and slower: models/README.md, "Training throughput"); the distances are then recomputed on the gathered targets, so the gradient is
the exact one. This replaces the published CUDA KNN and is exact (ties aside). The ADD distances
of all hypotheses come from one ``bmm`` of ``(B, N*3, 3)`` by ``(B, 3, M)``.

Refiner loss, per iteration: ADD/ADD-S of the refined pose (the current estimate composed with
the refiner's delta), no confidence term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from densefusion_ros.geometry import quat_to_matrix_torch

__all__ = [
    "EstimatorLossOutput",
    "RefinerLossOutput",
    "estimator_loss",
    "hypothesis_distances",
    "nearest_indices",
    "refiner_loss",
]

# Upper bound on the elements of one chunk of the squared-distance matrix (~128 MB in float32).
_CHUNK_ELEMENTS = 1 << 25


@torch.no_grad()
def nearest_indices(
    queries: torch.Tensor,
    refs: torch.Tensor,
    *,
    backend: str = "auto",
    chunk_elements: int = _CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Index of the nearest reference point for every query point.

    Args:
        queries: ``(B, Q, 3)``.
        refs: ``(B, K, 3)``.
        backend: ``"matmul"``: chunked ``baddbmm`` of the expanded squared norms, then argmin
            (what ``torch.cdist(..., compute_mode="use_mm_for_euclid_dist")`` does, without the
            sqrt); ``"kdtree"``: scipy's cKDTree (CPU only; faster than the matmul there, which
            is memory-bound); ``"auto"``: kdtree for CPU tensors, matmul otherwise.

    Returns:
        ``(B, Q)`` int64 indices into ``refs`` (``torch.cdist(queries, refs).argmin(-1)``, ties aside).
    """
    B, Q, _ = queries.shape
    if backend == "auto":
        backend = "kdtree" if queries.device.type == "cpu" else "matmul"
    if backend == "kdtree":
        from scipy.spatial import cKDTree

        q_np = queries.detach().to(torch.float64).numpy()
        r_np = refs.detach().to(torch.float64).numpy()
        workers = max(1, torch.get_num_threads())
        out_np = [cKDTree(r_np[b]).query(q_np[b], k=1, workers=workers)[1] for b in range(B)]
        return torch.from_numpy(np.stack(out_np).astype(np.int64)).reshape(B, Q)
    if backend != "matmul":
        raise ValueError(f"unknown nearest-neighbour backend {backend!r}")
    K = refs.shape[1]
    ref_sq = (refs * refs).sum(-1).unsqueeze(1)  # (B, 1, K)
    refs_t = refs.transpose(1, 2)  # (B, 3, K)
    step = max(1, chunk_elements // max(1, B * K))
    out = torch.empty(B, Q, dtype=torch.long, device=queries.device)
    for start in range(0, Q, step):
        q = queries[:, start:start + step]
        # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r ; |q|^2 does not change the argmin over r.
        d2 = torch.baddbmm(ref_sq, q, refs_t, alpha=-2.0)
        out[:, start:start + step] = d2.argmin(-1)
    return out


def _mean_norm(diff: torch.Tensor) -> torch.Tensor:
    """``(B, H, 3, M) -> (B, H)``: mean over M of the point norms (sqrt of a clamped sum of
    squares: faster to differentiate on CPU than ``vector_norm``, gradient 0 at 0)."""
    return diff.square().sum(2).clamp_min(1e-18).sqrt().mean(-1)


def hypothesis_distances(
    R: torch.Tensor,
    t: torch.Tensor,
    model_points: torch.Tensor,
    target: torch.Tensor,
    symmetric: torch.Tensor,
    *,
    knn_backend: str = "auto",
) -> torch.Tensor:
    """ADD / ADD-S distance of every pose hypothesis.

    Args:
        R: ``(B, H, 3, 3)`` rotations.
        t: ``(B, H, 3)`` translations.
        model_points: ``(B, M, 3)`` object-frame model points.
        target: ``(B, M, 3)`` the same points under the ground-truth pose.
        symmetric: ``(B,)`` bool; ADD-S (nearest target point of each predicted point) where True.
        knn_backend: see :func:`nearest_indices`.

    Returns:
        ``(B, H)`` mean point distances, in the units of the inputs (differentiable in R and t).
    """
    B, H = R.shape[:2]
    M = model_points.shape[1]
    # All hypotheses in one matmul: (B, H*3, 3) @ (B, 3, M) -> predicted points (B, H, 3, M).
    pred = torch.bmm(R.reshape(B, H * 3, 3), model_points.transpose(1, 2)).view(B, H, 3, M) + t.unsqueeze(-1)
    target_t = target.transpose(1, 2)  # (B, 3, M)
    sym = symmetric.to(device=R.device, dtype=torch.bool).reshape(B)
    if not bool(sym.any()):
        return _mean_norm(pred - target_t.unsqueeze(1))
    dis = pred.new_empty(B, H)
    if bool((~sym).any()):
        dis[~sym] = _mean_norm(pred[~sym] - target_t[~sym].unsqueeze(1))
    ps, ts = pred[sym], target_t[sym]  # (S, H, 3, M), (S, 3, K)
    S = ps.shape[0]
    queries = ps.detach().permute(0, 1, 3, 2).reshape(S, H * M, 3)
    idx = nearest_indices(queries, ts.transpose(1, 2), backend=knn_backend)  # (S, H*M)
    matched = torch.gather(ts, 2, idx.unsqueeze(1).expand(S, 3, H * M)).view(S, 3, H, M).transpose(1, 2)
    dis[sym] = _mean_norm(ps - matched)
    return dis


@dataclass
class EstimatorLossOutput:
    """What :func:`estimator_loss` returns.

    Attributes:
        loss: scalar, the mean over the batch of ``mean_i(dis_i c_i - w log c_i)``.
        dis: ``(B,)`` detached ADD/ADD-S of the most confident hypothesis.
        R: ``(B, 3, 3)`` detached rotation of that hypothesis.
        t: ``(B, 3)`` detached translation of that hypothesis.
        which: ``(B,)`` index of that hypothesis.
    """

    loss: torch.Tensor
    dis: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    which: torch.Tensor


def estimator_loss(
    pred_r: torch.Tensor,
    pred_t: torch.Tensor,
    pred_c: torch.Tensor,
    target: torch.Tensor,
    model_points: torch.Tensor,
    points: torch.Tensor,
    symmetric: torch.Tensor,
    w: float,
    *,
    knn_backend: str = "auto",
) -> EstimatorLossOutput:
    """The published per-pixel DenseFusion loss, for a batch.

    Args:
        pred_r: ``(B, N, 4)`` raw w-first quaternions (normalised here).
        pred_t: ``(B, N, 3)`` translation offsets from each input point.
        pred_c: ``(B, N, 1)`` or ``(B, N)`` confidences in (0, 1).
        target: ``(B, M, 3)`` model points under the ground-truth pose (plus the training noise).
        model_points: ``(B, M, 3)`` object-frame model points.
        points: ``(B, N, 3)`` the input cloud (camera frame, with the same noise).
        symmetric: ``(B,)`` bool, ADD-S where True.
        w: the confidence regularisation weight (published 0.015).
        knn_backend: nearest-neighbour search for ADD-S, see :func:`nearest_indices`.
    """
    conf = pred_c.reshape(pred_c.shape[0], -1)
    R = quat_to_matrix_torch(pred_r)  # (B, N, 3, 3)
    t = points + pred_t
    dis = hypothesis_distances(R, t, model_points, target, symmetric, knn_backend=knn_backend)  # (B, N)
    loss = (dis * conf - w * torch.log(conf)).mean()
    which = conf.detach().argmax(dim=1)
    ar = torch.arange(conf.shape[0], device=conf.device)
    return EstimatorLossOutput(loss, dis.detach()[ar, which], R.detach()[ar, which], t.detach()[ar, which], which)


@dataclass
class RefinerLossOutput:
    """What :func:`refiner_loss` returns.

    Attributes:
        loss: scalar, mean over the batch of ``dis``.
        dis: ``(B,)`` detached ADD/ADD-S of the refined pose.
    """

    loss: torch.Tensor
    dis: torch.Tensor


def refiner_loss(
    R: torch.Tensor,
    t: torch.Tensor,
    target: torch.Tensor,
    model_points: torch.Tensor,
    symmetric: torch.Tensor,
    *,
    knn_backend: str = "auto",
) -> RefinerLossOutput:
    """The published refiner loss for one iteration.

    The published code measures the refiner's delta ``(R_d, t_d)`` against the target moved into
    the current estimate's frame; a rigid motion keeps ADD and ADD-S, so the same distance is
    measured here between the refined pose ``(R R_d, R t_d + t)`` (from
    :func:`densefusion_ros.geometry.refine_pose_torch`) and the target in the camera frame.

    Args:
        R: ``(B, 3, 3)`` refined rotation (differentiable in the refiner's output).
        t: ``(B, 3)`` refined translation.
        target: ``(B, M, 3)`` model points under the ground-truth pose (camera frame).
        model_points: ``(B, M, 3)``.
        symmetric: ``(B,)`` bool.
        knn_backend: see :func:`nearest_indices`.
    """
    dis = hypothesis_distances(R.unsqueeze(1), t.unsqueeze(1), model_points, target, symmetric, knn_backend=knn_backend)[:, 0]
    return RefinerLossOutput(dis.mean(), dis.detach())
