"""Quaternion and pose conventions of :mod:`densefusion_ros.geometry` against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from densefusion_ros import geometry as g


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _random_poses(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return Rotation.random(n, random_state=1).as_matrix(), rng.normal(size=(n, 3))


def test_wxyz_xyzw_round_trip_and_order():
    q_wxyz = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(g.wxyz_to_xyzw(q_wxyz), [0.2, 0.3, 0.4, 0.1])
    np.testing.assert_array_equal(g.xyzw_to_wxyz(g.wxyz_to_xyzw(q_wxyz)), q_wxyz)
    batch = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(g.xyzw_to_wxyz(g.wxyz_to_xyzw(batch)), batch)


def test_quat_to_matrix_is_w_first_like_scipy(rng):
    q_xyzw = Rotation.random(50, random_state=2).as_quat()  # scipy default: scalar last
    q_wxyz = g.xyzw_to_wxyz(q_xyzw)
    np.testing.assert_allclose(g.quat_to_matrix(q_wxyz), Rotation.from_quat(q_xyzw).as_matrix(), atol=1e-12)
    # [cos(a/2), sin(a/2), 0, 0] is a rotation about x (fact sheet 4.7).
    a = 0.7
    R = g.quat_to_matrix(np.array([np.cos(a / 2), np.sin(a / 2), 0, 0]))
    np.testing.assert_allclose(R, Rotation.from_euler("x", a).as_matrix(), atol=1e-12)
    # Unnormalised input is normalised first.
    np.testing.assert_allclose(g.quat_to_matrix(3.0 * q_wxyz[0]), g.quat_to_matrix(q_wxyz[0]), atol=1e-12)


def test_matrix_to_quat_canonical_round_trip():
    R = Rotation.random(50, random_state=3).as_matrix()
    q = g.matrix_to_quat(R)
    assert q.shape == (50, 4)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(g.quat_to_matrix(q), R, atol=1e-12)
    np.testing.assert_allclose(g.wxyz_to_xyzw(q), Rotation.from_matrix(R).as_quat(canonical=True), atol=1e-12)


def test_quat_to_matrix_torch_matches_numpy():
    q = np.random.default_rng(4).normal(size=(7, 5, 4))  # unnormalised, batched
    R_t = g.quat_to_matrix_torch(torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(R_t, g.quat_to_matrix(q), atol=1e-12)
    R32 = g.quat_to_matrix_torch(torch.from_numpy(q).float())
    assert R32.dtype == torch.float32 and R32.shape == (7, 5, 3, 3)


def test_compose_inverse_round_trip(rng):
    R1, t1 = _random_poses(rng, 10)
    R2, t2 = _random_poses(rng, 10)
    R, t = g.compose(R1, t1, R2, t2)
    p = rng.normal(size=(10, 6, 3))
    # Composition applies the right-hand pose first.
    np.testing.assert_allclose(
        g.transform_points(p, R, t), g.transform_points(g.transform_points(p, R2, t2), R1, t1), atol=1e-12
    )
    # Inverse pose (R^T, -R^T t) composes to identity.
    R_inv = np.swapaxes(R1, -1, -2)
    t_inv = -(R_inv @ t1[..., None])[..., 0]
    Ri, ti = g.compose(R1, t1, R_inv, t_inv)
    np.testing.assert_allclose(Ri, np.broadcast_to(np.eye(3), Ri.shape), atol=1e-12)
    np.testing.assert_allclose(ti, 0.0, atol=1e-12)


def test_relative_undoes_compose(rng):
    """``relative(A, compose(A, B)) == B``: the second pose seen from the first."""
    (R1, t1), (R2, t2) = _random_poses(rng, 1), _random_poses(rng, 1)
    R, t = g.relative(R1[0], t1[0], *g.compose(R1[0], t1[0], R2[0], t2[0]))
    np.testing.assert_allclose(R, R2[0], atol=1e-12)
    np.testing.assert_allclose(t, t2[0], atol=1e-12)


def test_compose_torch_and_object_frame_match_numpy(rng):
    R1, t1 = _random_poses(rng, 4)
    R2, t2 = _random_poses(rng, 4)
    R, t = g.compose(R1, t1, R2, t2)
    Rt, tt = g.compose_torch(*(torch.from_numpy(a) for a in (R1, t1, R2, t2)))
    np.testing.assert_allclose(Rt.numpy(), R, atol=1e-12)
    np.testing.assert_allclose(tt.numpy(), t, atol=1e-12)
    # to_object_frame_torch inverts transform_points: R^T (p - t).
    p_obj = rng.normal(size=(4, 9, 3))
    p_cam = g.transform_points(p_obj, R1, t1)
    back = g.to_object_frame_torch(torch.from_numpy(p_cam), torch.from_numpy(R1), torch.from_numpy(t1))
    np.testing.assert_allclose(back.numpy(), p_obj, atol=1e-12)


def test_backproject_project_round_trip():
    K = np.array([[500.0, 0, 320.0], [0, 510.0, 240.0], [0, 0, 1]])
    depth = np.full((480, 640), 2.0, np.float32)
    rows, cols = np.array([0, 240, 479]), np.array([0, 320, 639])
    pts = g.backproject(depth, K, rows, cols)
    np.testing.assert_allclose(pts[1], [0, 0, 2.0])
    np.testing.assert_allclose(pts[0], [(0 - 320) * 2 / 500, (0 - 240) * 2 / 510, 2.0], rtol=1e-6)
    np.testing.assert_allclose(g.project(pts.astype(np.float64), K), np.stack([cols, rows], -1), atol=1e-4)


def test_share_in_image_counts_the_points_inside_the_image_and_in_front():
    """A row of points centred on the image's right edge is half inside; centred in the image all of
    it is, behind the camera none; of a row through the camera, the half in front (of all points)."""
    K = np.array([[500.0, 0, 320.0], [0, 500.0, 240.0], [0, 0, 1]])
    edge = (639.5 - 320.0) / 500.0 * 2.0  # x of the image's right edge at 2 m
    points = np.stack([np.linspace(-0.1, 0.1, 200), np.zeros(200), np.zeros(200)], 1)
    t = np.array([edge, 0.0, 2.0])
    assert g.share_in_image(points, np.eye(3), t, K, (480, 640)) == pytest.approx(0.5, abs=0.01)
    assert g.share_in_image(points, np.eye(3), np.array([0.0, 0, 2.0]), K, (480, 640)) == 1.0
    assert g.share_in_image(points, np.eye(3), np.array([0.0, 0, -2.0]), K, (480, 640)) == 0.0
    across = np.stack([np.zeros(200), np.zeros(200), np.linspace(-0.1, 0.1, 200)], 1)  # half behind the camera
    assert g.share_in_image(across, np.eye(3), np.zeros(3), K, (480, 640)) == 0.5
