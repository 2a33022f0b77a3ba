"""The batched DenseFusion losses (densefusion_ros.train.losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from densefusion_ros.eval import metrics
from densefusion_ros.geometry import matrix_to_quat, refine_pose_torch
from densefusion_ros.train.losses import estimator_loss, hypothesis_distances, nearest_indices, refiner_loss

B, N, M = 3, 40, 60


def _setup(seed: int = 0, sym=(False, True, False)):
    g = torch.Generator().manual_seed(seed)
    model = torch.randn(B, M, 3, generator=g, dtype=torch.float64) * 0.05
    R_gt = torch.from_numpy(Rotation.random(B, random_state=seed).as_matrix())
    t_gt = torch.tensor([[0.0, 0.0, 0.6], [0.1, -0.05, 0.8], [-0.1, 0.02, 0.5]], dtype=torch.float64)
    target = model @ R_gt.transpose(1, 2) + t_gt[:, None]
    points = target[:, :N] + 0.001 * torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    return model, R_gt, t_gt, target, points, torch.tensor(sym)


def test_perfect_prediction_has_zero_distance():
    model, R_gt, t_gt, target, points, sym = _setup()
    q = torch.from_numpy(matrix_to_quat(R_gt.numpy()))[:, None].expand(B, N, 4).clone().requires_grad_(True)
    dt = (t_gt[:, None] - points).clone().requires_grad_(True)  # t_i = p_i + dt_i = t_gt
    conf = torch.full((B, N, 1), 0.5, dtype=torch.float64, requires_grad=True)
    out = estimator_loss(q, dt, conf, target, model, points, sym, w=0.015)
    assert torch.allclose(out.dis, torch.zeros(B, dtype=torch.float64), atol=1e-7)
    assert out.loss.item() == pytest.approx(-0.015 * np.log(0.5), abs=1e-6)
    assert torch.allclose(out.R, R_gt, atol=1e-9) and torch.allclose(out.t, t_gt, atol=1e-9)
    out.loss.backward()  # gradients exist and are finite at the optimum
    assert torch.isfinite(q.grad).all() and torch.isfinite(dt.grad).all()


def test_add_matches_the_metric_and_adds_is_not_larger():
    model, R_gt, t_gt, target, points, _ = _setup(1)
    R = torch.from_numpy(Rotation.random(B * 5, random_state=2).as_matrix()).view(B, 5, 3, 3)
    t = t_gt[:, None] + 0.02 * torch.randn(B, 5, 3, dtype=torch.float64)
    add = hypothesis_distances(R, t, model, target, torch.zeros(B, dtype=torch.bool))
    adds = hypothesis_distances(R, t, model, target, torch.ones(B, dtype=torch.bool))
    for b in range(B):
        for h in range(5):
            ref = metrics.add(R[b, h].numpy(), t[b, h].numpy(), R_gt[b].numpy(), t_gt[b].numpy(), model[b].numpy())
            assert add[b, h].item() == pytest.approx(ref, rel=1e-9)
    assert (adds <= add + 1e-12).all()
    assert (adds < add).any()
    # a mixed batch equals the two homogeneous ones row by row
    mixed = hypothesis_distances(R, t, model, target, torch.tensor([True, False, True]))
    assert torch.allclose(mixed[0], adds[0]) and torch.allclose(mixed[1], add[1]) and torch.allclose(mixed[2], adds[2])


def test_adds_is_zero_for_a_turn_about_the_symmetry_axis():
    ang = torch.arange(0, 360, 10.0, dtype=torch.float64).deg2rad()
    ring = torch.stack([0.04 * ang.cos(), 0.04 * ang.sin(), torch.zeros_like(ang)], 1)[None]
    t = torch.tensor([[[0.0, 0.0, 0.7]]], dtype=torch.float64)
    target = ring + t[0]
    R = torch.from_numpy(Rotation.from_euler("z", 30, degrees=True).as_matrix())[None, None]
    sym = hypothesis_distances(R, t, ring, target, torch.tensor([True]))
    add = hypothesis_distances(R, t, ring, target, torch.tensor([False]))
    assert sym.item() == pytest.approx(0.0, abs=1e-7)
    assert add.item() == pytest.approx(2 * 0.04 * np.sin(np.radians(15)), rel=1e-6)


@pytest.mark.parametrize("backend", ["matmul", "kdtree"])
def test_nearest_indices_match_cdist(backend):
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(2, 3000, 3, generator=g), torch.randn(2, 200, 3, generator=g)
    ref = torch.cdist(q, r).argmin(-1)
    got = nearest_indices(q, r, backend=backend, chunk_elements=50_000)
    # ties aside (none in random data), the same neighbours
    assert (got == ref).float().mean().item() > 0.999


def test_gradients_flow_to_every_head():
    model, R_gt, t_gt, target, points, sym = _setup(4)
    q = torch.randn(B, N, 4, dtype=torch.float64, requires_grad=True)
    dt = (0.01 * torch.randn(B, N, 3, dtype=torch.float64)).requires_grad_(True)
    conf = torch.rand(B, N, 1, dtype=torch.float64).clamp(0.1, 0.9).requires_grad_(True)
    out = estimator_loss(q, dt, conf, target, model, points, sym, w=0.015)
    out.loss.backward()
    for p in (q, dt, conf):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # the reported hypothesis is the most confident one
    assert torch.equal(out.which, conf[..., 0].argmax(1))


def test_refiner_loss_and_frames():
    model, R_gt, t_gt, target, points, sym = _setup(5)
    # current estimate = GT perturbed; the ideal residual is the perturbation's inverse
    R_off = torch.from_numpy(Rotation.from_euler("x", 8, degrees=True).as_matrix()).expand(B, 3, 3)
    R_cur, t_cur = R_gt @ R_off, t_gt + 0.01
    # residual (R2, t2) with R_cur R2 = R_gt, R_cur t2 + t_cur = t_gt
    R2 = R_off.transpose(1, 2)
    t2 = (R_cur.transpose(1, 2) @ (t_gt - t_cur)[..., None])[..., 0]
    q2 = torch.from_numpy(matrix_to_quat(R2.numpy())).requires_grad_(True)
    R_new, t_new, moved = refine_pose_torch(target, R_cur, t_cur, q2, t2.clone().requires_grad_(True))
    assert torch.allclose(R_new, R_gt, atol=1e-9) and torch.allclose(t_new, t_gt, atol=1e-9)
    # after the step the target sits on the model points
    assert torch.allclose(moved, model, atol=1e-7)
    out = refiner_loss(R_new, t_new, target, model, sym)
    assert torch.allclose(out.dis, torch.zeros(B, dtype=torch.float64), atol=1e-7)
    # a wrong residual gives a positive loss with gradients
    q_bad = torch.tensor([[1.0, 0.2, 0.0, 0.0]] * B, dtype=torch.float64, requires_grad=True)
    t_bad = torch.zeros(B, 3, dtype=torch.float64, requires_grad=True)
    R_bad, t_bad_new, _ = refine_pose_torch(points, R_cur, t_cur, q_bad, t_bad)
    bad = refiner_loss(R_bad, t_bad_new, target, model, sym)
    assert bad.loss.item() > 0.005
    bad.loss.backward()
    assert q_bad.grad.abs().sum() > 0 and t_bad.grad.abs().sum() > 0


def test_refine_pose_matches_the_published_formulas():
    """The one composition rule against the three it replaced: the pipeline's (compose the matrices),
    the published loop's (numpy float64) and the published loss's (the delta against the target
    moved into the current frame, the points moved by the delta)."""
    from densefusion_ros.geometry import compose, quat_to_matrix, quat_to_matrix_torch, to_object_frame_torch

    model, R_gt, t_gt, target, points, sym = _setup(6)
    g = torch.Generator().manual_seed(1)
    R = torch.from_numpy(Rotation.random(B, random_state=3).as_matrix())
    t = t_gt + 0.02 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    q_d = torch.randn(B, 4, generator=g, dtype=torch.float64)
    t_d = 0.01 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    R_new, t_new, moved = refine_pose_torch(points, R, t, q_d, t_d)
    R_d = quat_to_matrix_torch(q_d)
    assert torch.allclose(R_new, R @ R_d, atol=1e-12) and torch.allclose(t_new, (R @ t_d[..., None])[..., 0] + t, atol=1e-12)
    R_np, t_np = compose(R.numpy(), t.numpy(), quat_to_matrix(q_d.numpy()), t_d.numpy())
    assert np.allclose(R_new.numpy(), R_np, atol=1e-12) and np.allclose(t_new.numpy(), t_np, atol=1e-12)
    old_points = to_object_frame_torch(to_object_frame_torch(points, R, t), R_d, t_d)
    assert torch.allclose(moved, old_points, atol=1e-12)
    old_dis = hypothesis_distances(R_d[:, None], t_d[:, None], model, to_object_frame_torch(target, R, t), sym)[:, 0]
    assert torch.allclose(refiner_loss(R_new, t_new, target, model, sym).dis, old_dis, atol=1e-12)
    # a float16 delta (autocast) onto a float32 pose: the pose stays float32, the points keep theirs
    R32, t32, moved32 = refine_pose_torch(points.float(), R.float(), t.float(), q_d.half(), t_d.half())
    assert R32.dtype == t32.dtype == moved32.dtype == torch.float32
