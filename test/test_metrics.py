"""Known answers for the pose metrics (densefusion_ros.eval.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from densefusion_ros.eval import metrics


def _rot_z(deg: float) -> np.ndarray:
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


@pytest.fixture
def cloud() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.05, (500, 3))


def test_identity_is_zero(cloud):
    R, t = _rot_z(33.0), np.array([0.1, -0.2, 0.7])
    assert metrics.add(R, t, R, t, cloud) == pytest.approx(0.0, abs=1e-12)
    assert metrics.adds(R, t, R, t, cloud) == pytest.approx(0.0, abs=1e-12)


def test_translation_offset_gives_its_length(cloud):
    R, t = _rot_z(10.0), np.array([0.0, 0.0, 0.5])
    off = np.array([0.01, -0.02, 0.02])  # |off| = 0.03
    assert metrics.add(R, t + off, R, t, cloud) == pytest.approx(0.03, abs=1e-12)
    assert metrics.adds(R, t + off, R, t, cloud) <= 0.03 + 1e-12
    # t given as a column vector works too
    assert metrics.add(R, (t + off).reshape(3, 1), R, t.reshape(3, 1), cloud) == pytest.approx(0.03)


def test_two_point_object_flipped():
    pts = np.array([[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0]])
    R_gt, t = np.eye(3), np.array([0.0, 0.0, 0.6])
    R_est = _rot_z(180.0)
    assert metrics.add(R_est, t, R_gt, t, pts) == pytest.approx(0.1)
    assert metrics.adds(R_est, t, R_gt, t, pts) == pytest.approx(0.0, abs=1e-12)


def test_symmetric_object_turned_about_its_axis():
    """Points on a ring (a cylinder's rim): a turn about the axis keeps ADD-S ~ 0, ADD grows."""
    ang = np.deg2rad(np.arange(0, 360, 1.0))
    r = 0.04
    ring = np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros_like(ang)], 1)
    cyl = np.concatenate([ring + [0, 0, z] for z in (-0.03, 0.0, 0.03)])
    R_gt, t = Rotation.from_euler("xy", [20, -30], degrees=True).as_matrix(), np.array([0.05, 0.0, 0.8])
    for turn in (1.0, 37.0, 90.0):  # whole multiples of the 1 degree spacing: an exact point match
        R_est = R_gt @ _rot_z(turn)
        assert metrics.adds(R_est, t, R_gt, t, cyl) == pytest.approx(0.0, abs=1e-9)
        assert metrics.add(R_est, t, R_gt, t, cyl) == pytest.approx(2 * r * math.sin(math.radians(turn) / 2), rel=1e-9)
    # off the sampling grid: ADD-S is at most half the point spacing
    R_est = R_gt @ _rot_z(45.5)
    assert metrics.adds(R_est, t, R_gt, t, cyl) <= 2 * r * math.sin(math.radians(0.25)) + 1e-12
    assert metrics.add(R_est, t, R_gt, t, cyl) > 0.03
    assert metrics.add_or_adds(R_est, t, R_gt, t, cyl, True) == metrics.adds(R_est, t, R_gt, t, cyl)
    assert metrics.add_or_adds(R_est, t, R_gt, t, cyl, False) == metrics.add(R_est, t, R_gt, t, cyl)


def test_adds_direction_is_gt_to_estimate():
    """ADD-S averages over GT-transformed points (YCB toolbox); here the two directions differ."""
    pts = np.array([[0.0, 0, 0], [0.01, 0, 0], [0.1, 0, 0]])
    # estimate squeezes nothing, but a translation makes the GT's far point lonely
    t_gt, t_est = np.zeros(3), np.array([0.09, 0.0, 0.0])
    est = pts + t_est
    gt = pts + t_gt
    expected = np.mean([np.min(np.linalg.norm(est - g, axis=1)) for g in gt])
    other = np.mean([np.min(np.linalg.norm(gt - e, axis=1)) for e in est])
    assert expected != pytest.approx(other)
    assert metrics.adds(np.eye(3), t_est, np.eye(3), t_gt, pts) == pytest.approx(expected)


def _vocap_reference(d: np.ndarray) -> float:
    """A literal port of the YCB-Video toolbox (plot_accuracy_keyframe.m + VOCap), in percent."""
    D = np.array(d, dtype=float)
    D[D > 0.1] = np.inf
    d = np.sort(D)
    n = len(d)
    accuracy = np.cumsum(np.ones(n)) / n
    index = np.isfinite(d)
    rec, prec = d[index], accuracy[index]
    if rec.size == 0:
        return 0.0
    mrec = np.concatenate([[0], rec, [0.1]])
    mpre = np.concatenate([[0], prec, [prec[-1]]])
    for i in range(1, len(mpre)):
        mpre[i] = max(mpre[i], mpre[i - 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]) * 10 * 100)


def test_vocap_known_values():
    assert metrics.auc(np.zeros(7)) == pytest.approx(100.0)
    assert metrics.auc(np.full(5, 0.2)) == 0.0
    assert metrics.auc(np.full(5, np.inf)) == 0.0
    # evenly spread errors 1..100 mm: sum_i 1 mm * i/100 = 50.5 mm of 100 mm
    assert metrics.auc(np.arange(1, 101) * 0.001) == pytest.approx(50.5)
    # half lost: the curve sits at 50 % from the first error on (right-endpoint rule of the toolbox)
    assert metrics.auc(np.array([0.05, np.inf])) == pytest.approx(50.0)
    # the toolbox's right-endpoint rule: one error of 5 cm scores 100 %
    assert metrics.auc(np.array([0.05])) == pytest.approx(100.0)
    assert metrics.vocap(np.array([0.02, 0.06]), np.array([0.5, 1.0])) == pytest.approx(0.02 * 0.5 + 0.04 * 1.0 + 0.04 * 1.0)
    assert math.isnan(metrics.auc(np.array([])))


def test_vocap_matches_the_toolbox_on_random_data():
    rng = np.random.default_rng(3)
    for _ in range(20):
        d = rng.exponential(0.03, rng.integers(1, 60))
        d[rng.random(d.size) < 0.1] = np.inf
        assert metrics.auc(d) == pytest.approx(_vocap_reference(d), abs=1e-9)


def test_accuracies():
    d = np.array([0.005, 0.019, 0.02, 0.5, np.inf, np.nan])
    assert metrics.accuracy_below(d, 0.02) == pytest.approx(200 / 6)
    diam = np.array([0.1, 0.1, 0.3, 0.3, 0.3, 0.3])
    assert metrics.linemod_accuracy(d, diam) == pytest.approx(200 / 6)  # 0.005 < 0.01, 0.02 < 0.03
    assert metrics.linemod_accuracy(d[:2], 0.1) == pytest.approx(50.0)
    curve = metrics.accuracy_curve(np.array([0.01, 0.03, np.inf]), np.array([0.0, 0.01, 0.02, 0.1]))
    np.testing.assert_allclose(curve, [0.0, 0.0, 100 / 3, 200 / 3])


def test_rotation_error_angle_and_object_axis():
    """The turn from the true to the estimated orientation, about an axis of the object frame."""
    R_gt = Rotation.from_euler("xyz", [20, -40, 75], degrees=True).as_matrix()
    flip = Rotation.from_rotvec(np.pi * np.array([0.0, 1.0, 0.0])).as_matrix()  # half turn about object y
    angle, axis = metrics.rotation_error(R_gt @ flip, R_gt)
    assert angle == pytest.approx(180.0, abs=1e-6) and abs(axis[1]) == pytest.approx(1.0, abs=1e-6)
    angle, axis = metrics.rotation_error(R_gt @ Rotation.from_rotvec([0.0, 0.0, 0.3]).as_matrix(), R_gt)
    assert angle == pytest.approx(np.degrees(0.3)) and axis == pytest.approx([0.0, 0.0, 1.0])
    assert metrics.rotation_error(R_gt, R_gt)[0] == pytest.approx(0.0, abs=1e-6)
