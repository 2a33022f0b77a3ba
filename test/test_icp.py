"""ICP recovers a known small offset of a sampled object cloud."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from densefusion_ros.catalog import ObjectInfo
from densefusion_ros.icp import IcpOptions, cube_rotations, icp_from_centroid, refine_pose

pytest.importorskip("open3d")


@pytest.fixture(scope="module")
def model_points(tmp_path_factory) -> np.ndarray:
    import trimesh

    path = Path(tmp_path_factory.mktemp("mesh")) / "box.obj"
    trimesh.creation.box(extents=(0.10, 0.06, 0.04)).export(path)  # asymmetric box, metres
    obj = ObjectInfo(name="box", class_id=1, index=0, mesh_path=path, scale=np.ones(3))
    return obj.sample_points(1500, seed=0)


def _observe(model: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The camera-facing half of the model (a partial view), in the camera frame."""
    cam = model @ R.T + t
    normals_toward_camera = (model - model.mean(0)) @ R.T
    return cam[(normals_toward_camera[:, 2] < 0)]


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane"])
def test_small_offset_is_recovered(model_points, method):
    R_gt = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    t_gt = np.array([0.05, -0.02, 0.7])
    observed = _observe(model_points, R_gt, t_gt)
    R0 = Rotation.from_euler("xyz", [4, -3, 5], degrees=True).as_matrix() @ R_gt
    t0 = t_gt + np.array([0.006, -0.004, 0.005])
    res = refine_pose(observed, model_points, R0, t0, IcpOptions(method=method, max_distance=0.02, max_iterations=60))
    assert res.accepted and res.fitness > 0.9
    angle = np.degrees(Rotation.from_matrix(res.R @ R_gt.T).magnitude())
    assert angle < 1.0, angle
    assert np.linalg.norm(res.t - t_gt) < 2e-3
    assert res.rmse < 5e-3


def test_bad_input_keeps_pose(model_points):
    res = refine_pose(np.zeros((2, 3)), model_points, np.eye(3), np.ones(3))
    assert not res.accepted
    np.testing.assert_array_equal(res.t, np.ones(3))


def test_centroid_init_with_cube_starts(model_points):
    R_gt = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # one of the cube group starts
    t_gt = np.array([0.0, 0.0, 0.6])
    observed = _observe(model_points, R_gt, t_gt)
    res = icp_from_centroid(observed, model_points, IcpOptions(max_distance=0.03, max_iterations=50))
    from scipy.spatial import cKDTree

    # A box is symmetric under 180 deg turns: compare surfaces (ADD-S), not poses.
    est = model_points @ res.R.T + res.t
    adds = cKDTree(est).query(model_points @ R_gt.T + t_gt)[0].mean()
    assert res.fitness > 0.9 and adds < 3e-3, (res.fitness, adds)
    assert cube_rotations().shape == (24, 3, 3)
    np.testing.assert_allclose(cube_rotations()[0], np.eye(3))
