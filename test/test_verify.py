"""Batched verification (densefusion_ros.verify) against the Open3D path on fixed inputs (the tests
that need Open3D skip without it, so that the CUDA ones run on a GPU machine that lacks it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from densefusion_ros.geometry import backproject
from densefusion_ros.icp import IcpOptions, depth_consistency, refine_pose, refine_with_hypotheses
from densefusion_ros.tracking import TrackerOptions
from densefusion_ros.verify import (
    DepthEvidence,
    ModelBank,
    ModelGeometry,
    VerifyInput,
    depth_terms,
    icp,
    padded,
    score_poses,
    seen_violation,
    verify_instances,
)

from helpers import chair_object, render_depth

try:
    import open3d  # noqa: F401 - the reference path; a GPU machine may lack it
except ImportError:
    open3d = None

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def chair(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    obj = chair_object(tmp_path_factory.mktemp("mesh"))
    return obj.sample_points(2000, seed=0), obj.sample_points(200_000, seed=1)


def _angle(R: np.ndarray, R_gt: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(R @ R_gt.T).magnitude()))


def _scene(chair, poses):
    """Depth with the chair at each of ``poses``, each instance's mask and observed points."""
    model, surface = chair
    depth, masks = None, []
    for R, t in poses:
        depth, mask = render_depth(surface, R, t, K, depth=depth)
        masks = [m & ~mask for m in masks] + [mask]
    observed = [backproject(depth.astype(np.float32), K, *np.nonzero(m)) for m in masks]
    return depth, masks, observed


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hole", [False, True])
def test_scores_equal_depth_consistency(chair, device, hole):
    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.01, -0.01, 0.5])
    depth, (mask,), _ = _scene(chair, [(R_gt, t_gt)])
    if hole:  # a third of the mask without a reading: left out of the coverage on both paths
        rows = np.flatnonzero(mask.any(1))
        depth[rows[0] : rows[0] + len(rows) // 3] = 0.0
    Rs = np.concatenate([R_gt[None], Rotation.random(15, random_state=1).as_matrix()])
    ts = t_gt + np.random.default_rng(0).normal(0, 0.01, (16, 3))
    ts[-2:] = [[0.17, 0.0, 0.5], [0.0, 0.0, -0.02]]  # across the image's edge; behind the camera
    evidence = DepthEvidence.build(depth.astype(np.float32), K, [mask], device)
    as_t = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32, device=device)  # noqa: E731
    points = as_t(model)[None].expand(16, -1, -1)
    batched = score_poses(evidence, points, torch.zeros(16, dtype=torch.int64, device=device), as_t(Rs), as_t(ts), 0.01, 3.0, 16.0)
    single = [depth_consistency(model @ R.T + t, depth, K, mask, 0.01, 3.0, 16.0) for R, t in zip(Rs, ts)]
    np.testing.assert_allclose(batched.cpu().numpy(), single, atol=1e-4)


@pytest.mark.skipif(open3d is None, reason="needs Open3D")
@pytest.mark.parametrize("method", ["point_to_plane", "point_to_point"])
def test_batched_icp_matches_open3d_from_a_small_offset(chair, method):
    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix(), np.array([0.05, -0.02, 0.7])
    _, _, (observed,) = _scene(chair, [(R_gt, t_gt)])
    R0 = Rotation.from_euler("xyz", [4, -3, 5], degrees=True).as_matrix() @ R_gt
    t0 = t_gt + np.array([0.006, -0.004, 0.005])
    options = IcpOptions(method=method, max_distance=0.02, max_iterations=60)
    reference = refine_pose(observed, model, R0, t0, options)
    bank = ModelBank([ModelGeometry.build(model, 0.02, "cpu")])
    source, valid = padded([observed], [0], "cpu")
    as_t = lambda a: torch.as_tensor(a[None], dtype=torch.float32)  # noqa: E731
    R, t, fitness, rmse = icp(bank, torch.zeros(1, dtype=torch.int64), source, valid, as_t(R0), as_t(t0), 60, method)
    R, t = R[0].double().numpy(), t[0].double().numpy()
    assert _angle(R, reference.R) < 0.5 and np.linalg.norm(t - reference.t) < 1e-3
    assert _angle(R, R_gt) < 1.0 and np.linalg.norm(t - t_gt) < 2e-3
    assert float(fitness[0]) == pytest.approx(reference.fitness, abs=0.02)
    assert float(rmse[0]) == pytest.approx(reference.rmse, abs=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_two_instances_recover_from_turns_in_one_call_as_open3d_does(chair, device):
    """Two chairs in one frame, each network pose a quarter or half turn off: one batched call
    recovers both, as the Open3D path does one at a time (where Open3D is installed)."""
    model, _ = chair
    truths = [
        (Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([-0.07, -0.01, 0.5])),
        (Rotation.from_euler("xyz", [-10, 40, 100], degrees=True).as_matrix(), np.array([0.08, 0.02, 0.55])),
    ]
    depth, masks, observed = _scene(chair, truths)
    centre = model.mean(0)
    options = IcpOptions(max_distance=0.015, max_iterations=50)
    geometry = ModelGeometry.build(model, 0.015, device)
    inputs, starts = [], []
    for slot, ((R_gt, t_gt), turn) in enumerate(zip(truths, (("y", 90), ("x", 180)))):
        R0 = Rotation.from_euler("xyz", [3, -2, 2], degrees=True).as_matrix() @ R_gt @ Rotation.from_euler(*turn, degrees=True).as_matrix()
        t0 = t_gt + R_gt @ centre - R0 @ centre + np.array([0.004, -0.003, 0.003])
        inputs.append(VerifyInput(geometry, observed[slot], R0, t0, slot))
        starts.append((R0, t0))
    evidence = DepthEvidence.build(depth.astype(np.float32), K, masks, device)
    batched = verify_instances(inputs, evidence, options)
    for (R_gt, t_gt), (R0, t0), mask, obs, res in zip(truths, starts, masks, observed, batched):
        references = [refine_with_hypotheses(obs, model, R0, t0, depth, K, mask, options)] if open3d else []
        for r in [res, *references]:
            assert r.accepted and _angle(r.R, R_gt) < 2.0 and np.linalg.norm(r.t - t_gt) < 3e-3, (_angle(r.R, R_gt), r.t - t_gt)


def test_no_accepted_start_keeps_the_input_pose(chair):
    model, _ = chair
    depth = np.full((240, 320), 0.8)
    mask = np.zeros((240, 320), bool)
    mask[100:110, 100:110] = True
    far = np.array([[0.0, 0.0, 0.8], [0.001, 0.0, 0.8], [0.0, 0.001, 0.8], [0.001, 0.001, 0.8]])  # a patch of wall
    R0, t0 = np.eye(3), np.array([0.3, 0.3, 0.5])  # nowhere near it
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    evidence = DepthEvidence.build(depth.astype(np.float32), K, [mask], "cpu")
    few = np.zeros((2, 3))
    inputs = [VerifyInput(geometry, far, R0, t0, 0), VerifyInput(geometry, few, R0, t0, 0)]
    res, res_few = verify_instances(inputs, evidence, IcpOptions(max_distance=0.015))
    assert not res_few.accepted and np.allclose(res_few.t, t0)
    assert (not res.accepted and np.allclose(res.t, t0)) or res.fitness >= IcpOptions().min_fitness


def test_only_near_ties_climb(chair, monkeypatch):
    """With ``verify_climb_margin`` an instance whose best coarse result leads clearly skips the
    climb and still ends right; with margin 0 every instance climbs, to the same pose."""
    import densefusion_ros.verify as verify

    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.0, -0.01, 0.5])
    depth, (mask,), (obs,) = _scene(chair, [(R_gt, t_gt)])
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    evidence = DepthEvidence.build(depth.astype(np.float32), K, [mask], "cpu")
    R0 = Rotation.from_euler("xyz", [4, -3, 2], degrees=True).as_matrix() @ R_gt
    climbed = []
    real_climb = verify.climb
    monkeypatch.setattr(verify, "climb", lambda *a, **k: climbed.append(len(a[2])) or real_climb(*a, **k))
    results = {}
    for margin in (1.0, 0.0):
        (res,) = verify_instances([VerifyInput(geometry, obs, R0, t_gt, 0)], evidence, IcpOptions(max_distance=0.015, verify_climb_margin=margin))
        results[margin] = res
        assert res.accepted and _angle(res.R, R_gt) < 2.0 and np.linalg.norm(res.t - t_gt) < 3e-3
    assert len(climbed) == 1 and 2 <= climbed[0] <= IcpOptions().verify_climb, "only the margin-0 run climbed, its distinct results"
    assert _angle(results[1.0].R, results[0.0].R) < 1.0


def test_pose_covariance_matches_the_spread_of_fits_and_grows_with_noise_and_occlusion(chair):
    """The covariance predicts how far poses fitted to noisy depth scatter (in ROS's order and the
    camera frame: shifts, then turns about the camera's axes), and grows with noise and occlusion."""
    from densefusion_ros.verify import pose_covariance

    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.01, -0.01, 0.5])
    _, _, (obs,) = _scene(chair, [(R_gt, t_gt)])
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    rng = np.random.default_rng(0)
    noisy = [obs + rng.normal(0, 0.002, obs.shape) for _ in range(60)]
    source, valid = padded(noisy, list(range(60)), "cpu")
    bank, obj = ModelBank([geometry]), torch.zeros(60, dtype=torch.int64)
    as_t = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32)  # noqa: E731
    R, t, _, _ = icp(bank, obj, source, valid, as_t([R_gt] * 60), as_t([t_gt] * 60), 30, "point_to_plane")
    shifts = t.double().numpy() - t_gt
    turns = Rotation.from_matrix(R.double().numpy() @ R_gt.T).as_rotvec()  # about the camera's axes
    predicted = np.mean([pose_covariance(geometry, x, R_gt, t_gt) for x in noisy[:10]], axis=0)
    assert np.allclose(predicted, predicted.T) and np.linalg.eigvalsh(predicted).min() > 0
    for block, sample in ((predicted[:3, :3], shifts), (predicted[3:, 3:], turns)):
        ratio = np.trace(np.cov(sample.T)) / np.trace(block)
        assert 0.5 < ratio < 2.0, ratio
    clean = pose_covariance(geometry, obs + rng.normal(0, 0.0005, obs.shape), R_gt, t_gt)
    occluded = pose_covariance(geometry, noisy[0][obs[:, 0] < np.percentile(obs[:, 0], 35)], R_gt, t_gt)
    assert np.trace(clean) < np.trace(predicted) < np.trace(occluded)
    assert pose_covariance(geometry, obs[:5], R_gt, t_gt) is None  # too few points to tell


def test_batched_climb_takes_the_steps_of_the_one_pose_ascent(chair):
    """verify's climb scores the rest of a sweep in one call; it must end where the sequential
    coordinate ascent (:func:`densefusion_ros.icp._climb`, one move scored at a time) ends, pose
    by pose, with the same score function."""
    from densefusion_ros.icp import _climb as one_pose_climb
    from densefusion_ros.verify import climb as batched_climb

    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.0, -0.01, 0.5])
    depth, (mask,), _ = _scene(chair, [(R_gt, t_gt)])
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    bank = ModelBank([geometry])
    evidence = DepthEvidence.build(depth.astype(np.float32), K, [mask], "cpu")
    weights = (0.01, 3.0, 16.0)
    rng = np.random.default_rng(3)
    starts = [(Rotation.from_rotvec(rng.normal(0, 0.12, 3)).as_matrix() @ R_gt, t_gt + rng.normal(0, 0.006, 3)) for _ in range(6)]
    as_t = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32)  # noqa: E731
    R0, t0 = as_t([R for R, _ in starts]), as_t([t for _, t in starts])
    zeros = torch.zeros(len(starts), dtype=torch.int64)

    def score(R, t):
        return float(score_poses(evidence, bank.points[:1], zeros[:1], as_t(R)[None], as_t(t)[None], *weights)[0])

    start_scores = score_poses(evidence, bank.points[zeros], zeros, R0, t0, *weights)
    R, t, s = batched_climb(evidence, bank, zeros, zeros, R0, t0, start_scores, weights, max_sweeps=1000)
    centre = bank.centre[0].numpy()
    for k in range(len(starts)):
        best, R_one, t_one = one_pose_climb(score, R0[k].numpy(), t0[k].numpy(), centre, float(start_scores[k]))
        assert best > float(start_scores[k]), "every start was off the true pose: the ascent moved"
        np.testing.assert_allclose(float(s[k]), best, atol=1e-6)
        np.testing.assert_allclose(R[k].numpy(), R_one, atol=1e-5)
        np.testing.assert_allclose(t[k].numpy(), t_one, atol=1e-6)


def test_a_pose_the_camera_sees_through_is_not_accepted(chair):
    """Where the measured depth lies far behind the object (the camera sees through the pose),
    the verified pose's model points violate the depth: over ``verify_max_violation`` it is not
    accepted (and the pipeline does not publish it); on the true depth it is."""
    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.0, -0.01, 0.5])
    depth, (mask,), (obs,) = _scene(chair, [(R_gt, t_gt)])
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    see_through = depth.astype(np.float32).copy()
    cols = np.nonzero(mask.any(0))[0]
    half = mask & (np.arange(mask.shape[1]) < cols.mean())[None]
    see_through[half] += 0.3  # a surface 30 cm behind the object, seen through its left half
    results, seen = {}, {}
    slot = torch.zeros(1, dtype=torch.int64)
    for name, d in (("true", depth.astype(np.float32)), ("see_through", see_through)):
        evidence = DepthEvidence.build(d, K, [mask], "cpu")
        (results[name],) = verify_instances([VerifyInput(geometry, obs, R_gt, t_gt, 0)], evidence, IcpOptions(max_distance=0.015))
        pose = [torch.as_tensor(x[None], dtype=torch.float32) for x in (results[name].R, results[name].t)]
        seen[name] = float(seen_violation(evidence, ModelBank([geometry]).points[slot], slot, *pose, IcpOptions().verify_tolerance)[0])
    assert results["true"].accepted and results["true"].violating < 0.05
    assert results["see_through"].violating > IcpOptions().verify_max_violation
    assert not results["see_through"].accepted
    # the share of what the camera would see, measured on the returned pose (the pipeline's verify_max_seen_violation)
    for name, result in results.items():
        assert result.seen_violating == pytest.approx(seen[name], abs=1e-6), name
    assert results["true"].seen_violating < 0.05 < results["see_through"].seen_violating


def test_a_bank_of_repeated_models_finds_what_each_model_alone_finds(chair):
    model, _ = chair
    small, large = ModelGeometry.build(model, 0.015, "cpu"), ModelGeometry.build(model * 1.5, 0.03, "cpu")
    X = torch.as_tensor(np.random.default_rng(0).normal(0, 0.05, (3, 3, 400)), dtype=torch.float32)  # [B,3,N] object frame
    joined = ModelBank([small, large, small])
    q, n = joined.nearest(X, joined.rows(torch.arange(3)))
    for row, geometry in enumerate([small, large, small]):
        alone = ModelBank([geometry])
        q1, n1 = alone.nearest(X[row : row + 1], alone.rows(torch.zeros(1, dtype=torch.int64)))
        assert torch.equal(q[row], q1[0]) and torch.equal(n[row], n1[0])
    q_far, _ = joined.nearest(X[:1], joined.rows(torch.ones(1, dtype=torch.int64)))  # the large model's row
    assert not torch.equal(q_far[0], q[0])


@pytest.mark.parametrize("device", DEVICES)
def test_seen_violation_weighs_what_the_camera_would_see(chair, device):
    """A long box pointing at the camera, its front face 15 mm through a flat surface (a pose sunk
    into a surface of the object's colour): a few percent of all its points lie in front of the
    depth, under the tracker's ``max_violation``, but most of what the camera would see of it
    does. The chair at its true pose: none, on either measure."""
    import trimesh

    as_t = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32, device=device)[None]  # noqa: E731
    slot = torch.zeros(1, dtype=torch.int64, device=device)
    box = np.asarray(trimesh.creation.box(extents=(0.03, 0.03, 0.3)).sample(4000, seed=0))
    surface = np.full((240, 320), 0.5, np.float32)
    evidence = DepthEvidence.build(surface, K, [np.ones(surface.shape, bool)], device)
    args = (evidence, as_t(box), slot, as_t(np.eye(3)), as_t([0.0, 0.0, 0.5 - 0.015 + 0.15]))
    _, violating, _ = depth_terms(*args)
    assert 0.0 < float(violating[0]) < TrackerOptions().max_violation
    assert float(seen_violation(*args)[0]) > 0.5  # the face, and the side walls' first centimetre (seen, half of it in front)

    model, _ = chair
    R_gt, t_gt = Rotation.from_euler("xyz", [30, -20, 15], degrees=True).as_matrix(), np.array([0.01, -0.01, 0.5])
    depth, (mask,), _ = _scene(chair, [(R_gt, t_gt)])
    evidence = DepthEvidence.build(depth.astype(np.float32), K, [mask], device)
    args = (evidence, as_t(model), slot, as_t(R_gt), as_t(t_gt))
    assert float(depth_terms(*args)[1][0]) == 0.0 and float(seen_violation(*args)[0]) == 0.0


def test_a_models_own_bank_is_made_once_and_matches_a_fresh_one(chair):
    model, _ = chair
    geometry = ModelGeometry.build(model, 0.015, "cpu")
    bank = geometry.bank
    assert geometry.bank is bank  # the tracker's one-object calls share it
    fresh = ModelBank([geometry])
    for name in ("points", "normals", "centre", "max_distance", "origin", "inv_cell", "top", "strides", "lookup", "lookup_offset", "points_normals"):
        assert torch.equal(getattr(bank, name), getattr(fresh, name))


def test_evidence_reads_no_depth_where_the_image_has_none():
    """NaN, infinite, zero and negative depths all read "no reading" (0 in ``signed_depth``);
    a valid one reads its depth inside the mask and minus it outside."""
    depth = np.full((4, 5), 0.5, np.float32)
    depth[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    depth[1, 0] = -0.2
    mask = np.zeros((4, 5), bool)
    mask[:, :2] = True
    padded_signed = DepthEvidence.build(depth, K, [mask], "cpu").signed_depth[0].numpy()
    signed = padded_signed[1:-1, 1:-1]
    assert np.all(signed[0, :4] == 0) and signed[1, 0] == 0
    assert signed[2, 0] == np.float32(0.5) and signed[2, 3] == -np.float32(0.5)
    assert np.all(padded_signed[0] == 0) and np.all(padded_signed[:, -1] == 0)  # the border reads no depth
