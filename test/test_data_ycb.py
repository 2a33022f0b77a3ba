"""YCB-Video native reader (densefusion_ros.data.ycb) on a tiny fixture written in that format."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.io import savemat
from scipy.spatial.transform import Rotation

from densefusion_ros.data.ycb import K_CMU, K_UW, YcbVideoDataset, intrinsics

H, W = 30, 40
CLASSES = ["002_master_chef_can", "003_cracker_box", "004_sugar_box"]


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "image_sets").mkdir()
    (tmp_path / "image_sets" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "image_sets" / "keyframe.txt").write_text("0048/000001\n0048/000002\n")
    for name in CLASSES:
        (tmp_path / "models" / name).mkdir(parents=True)
        np.savetxt(tmp_path / "models" / name / "points.xyz", np.array([[0.01, 0.02, 0.03], [-0.04, 0.0, 0.05]]))
    video = tmp_path / "data" / "0048"
    video.mkdir(parents=True)
    for frame in (1, 2):
        prefix = video / f"{frame:06d}"
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[..., 0] = 250  # red, written as BGR below
        cv2.imwrite(f"{prefix}-color.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(f"{prefix}-depth.png", np.full((H, W), 8000 + frame, np.uint16))  # 0.8 m at 1e-4 m units
        label = np.zeros((H, W), np.uint8)
        label[2:10, 3:12] = 1
        label[15:25, 20:35] = 3
        cv2.imwrite(f"{prefix}-label.png", label)
        R1 = Rotation.from_euler("xyz", [30, 0, 10 * frame], degrees=True).as_matrix()
        R3 = Rotation.from_euler("y", 45, degrees=True).as_matrix()
        poses = np.zeros((3, 4, 2))
        poses[:, :3, 0], poses[:, 3, 0] = R1, [0.05, -0.02, 0.9]
        poses[:, :3, 1], poses[:, 3, 1] = R3, [-0.1, 0.03, 1.1]
        savemat(f"{prefix}-meta.mat", {
            "cls_indexes": np.array([[1], [3]], dtype=np.float64),  # [n, 1], 1-based
            "poses": poses,                                          # [3, 4, n], metres
            "intrinsic_matrix": K_UW,
            "factor_depth": np.array([[10000]], dtype=np.float64),
            "center": np.zeros((2, 2)),
        })
    return tmp_path


def test_reads_meta_pose_layout_depth_and_masks(root):
    ds = YcbVideoDataset(root, "keyframe")
    assert ds.index == ["data/0048/000001", "data/0048/000002"] and len(ds) == 2
    f = ds[1]
    assert f.rgb.shape == (H, W, 3) and f.rgb[0, 0, 0] == 250 and f.rgb[0, 0, 2] == 0  # RGB order
    assert f.depth_m.dtype == np.float32
    np.testing.assert_allclose(f.depth_m, 0.8002, rtol=1e-6)  # raw / factor_depth
    np.testing.assert_allclose(f.K, K_UW)
    assert [g.class_id for g in f.gt] == [1, 3]
    np.testing.assert_allclose(f.gt[0].R, Rotation.from_euler("xyz", [30, 0, 20], degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(f.gt[0].t, [0.05, -0.02, 0.9])  # metres, poses[:, 3, i]
    np.testing.assert_allclose(f.gt[1].t, [-0.1, 0.03, 1.1])
    assert f.gt[0].mask.sum() == 8 * 9 and f.gt[1].mask.sum() == 10 * 15
    assert f.label is None
    assert YcbVideoDataset(root, ["0048/000001"], with_label=True)[0].label.max() == 3


def test_default_index_classes_and_points(root):
    ds = YcbVideoDataset(root)
    assert ds.index == ["data/0048/000001", "data/0048/000002"]
    assert ds.classes[2] == "004_sugar_box"
    pts = ds.model_points(3)
    assert pts.shape == (2, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[1], [-0.04, 0.0, 0.05])


def test_intrinsics_fallback_by_video():
    np.testing.assert_allclose(intrinsics("0012/000001"), K_UW)
    np.testing.assert_allclose(intrinsics("data/0060/000001"), K_CMU)
    np.testing.assert_allclose(intrinsics("data_syn/000001"), K_UW)
