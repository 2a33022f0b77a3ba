"""The support plane: found in a table's depth, absent without one, and a pose sunk into it
counts as seen-through in the depth check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densefusion_ros.support_plane import support_plane
from densefusion_ros.verify import DepthEvidence, depth_terms

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
SHAPE = (240, 320)
NORMAL = np.array([0.0, -0.8, -0.6])  # a table seen from 0.5 m, the camera tilted down
OFFSET = 0.5


def _table(noise: float = 0.002, seed: int = 0) -> np.ndarray:
    """Depth (m) of the plane ``NORMAL . x + OFFSET = 0`` with Gaussian noise."""
    v, u = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(SHAPE)], -1)
    depth = -OFFSET / (rays @ NORMAL)
    return (depth + np.random.default_rng(seed).normal(0, noise, SHAPE)).astype(np.float32)


def test_the_table_is_found_with_its_normal_toward_the_camera():
    depth = _table()
    box = np.zeros(SHAPE, bool)
    box[80:160, 100:200] = True
    depth[box] -= 0.05  # an object on the table, masked out
    depth[:20] = 0  # no reading along the top rows
    plane = support_plane(depth, K, exclude=box)
    assert plane is not None
    assert np.degrees(np.arccos(np.clip(plane[:3] @ NORMAL, -1, 1))) < 1.0
    assert abs(plane[3] - OFFSET) < 0.005 and plane[3] > 0


def test_no_plane_without_a_dominant_surface():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.4, 1.6, SHAPE).astype(np.float32)  # no surface holds a third of the points
    assert support_plane(depth, K) is None
    assert support_plane(np.zeros(SHAPE, np.float32), K) is None  # no readings at all


def test_points_below_the_plane_count_as_violating():
    """A box of points under the table hides behind its depth: without the plane nothing speaks
    against it; with the plane every point more than the tolerance below it counts as violating."""
    depth = _table(noise=0.0)
    plane = support_plane(depth, K)
    e1 = np.array([1.0, 0.0, 0.0])
    e2 = np.cross(NORMAL, e1)
    grid = np.linspace(-0.02, 0.02, 9)
    a, b, h = (x.ravel() for x in np.meshgrid(grid, grid, np.linspace(0.0, 0.03, 7)))
    spot = np.array([0.0, 0.0, OFFSET / 0.6])  # the table under the image centre (NORMAL . x + OFFSET = 0)
    mask = np.zeros(SHAPE, bool)

    def violating(top_below: float, with_plane: bool) -> float:
        """The share of the box (3 cm tall, its top ``top_below`` under the surface) that violates."""
        box = spot + np.outer(a, e1) + np.outer(b, e2) - np.outer(h + top_below, NORMAL)  # NORMAL points up
        evidence = DepthEvidence.build(depth, K, [mask], "cpu", plane=plane if with_plane else None)
        as_t = lambda x: torch.as_tensor(x, dtype=torch.float32)[None]  # noqa: E731
        _, v, _ = depth_terms(evidence, as_t(box), torch.zeros(1, dtype=torch.int64), as_t(np.eye(3)), as_t(np.zeros(3)), tolerance=0.01)
        return float(v[0])

    assert violating(0.02, with_plane=False) == 0.0
    assert violating(0.02, with_plane=True) == 1.0
    assert violating(0.0, with_plane=True) == pytest.approx(4 / 7)  # the layers at 0, 5, 10 mm are within the tolerance
