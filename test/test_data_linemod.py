"""Linemod_preprocessed reader (densefusion_ros.data.linemod) on a tiny fixture in that format."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import trimesh
import yaml

from densefusion_ros.data.linemod import K_LINEMOD, LinemodDataset

H, W = 24, 32
K_INFO = [572.4114, 0.0, 325.2611, 0.0, 573.57043, 242.04899, 0.0, 0.0, 1.0]


def _write_folder(root, obj, frames, entries_of):
    folder = root / "data" / f"{obj:02d}"
    for sub in ("rgb", "depth", "mask"):
        (folder / sub).mkdir(parents=True)
    gt, info = {}, {}
    for frame in frames:
        name = f"{frame:04d}.png"
        cv2.imwrite(str(folder / "rgb" / name), np.full((H, W, 3), (10, 20, 30), np.uint8))  # BGR
        cv2.imwrite(str(folder / "depth" / name), np.full((H, W), 700 + frame, np.uint16))  # mm
        mask = np.zeros((H, W, 3), np.uint8)
        mask[4:10, 5:15] = 255  # white RGB mask, as in the download
        cv2.imwrite(str(folder / "mask" / name), mask)
        gt[frame] = entries_of(frame)
        info[frame] = {"cam_K": K_INFO, "depth_scale": 1.0}
    (folder / "gt.yml").write_text(yaml.safe_dump(gt))
    (folder / "info.yml").write_text(yaml.safe_dump(info))
    (folder / "train.txt").write_text("".join(f"{f:04d}\n" for f in frames[:-1]))
    (folder / "test.txt").write_text(f"{frames[-1]:04d}\n")


def _entry(obj_id, t_mm, angle_deg=0.0):
    c, s = float(np.cos(np.deg2rad(angle_deg))), float(np.sin(np.deg2rad(angle_deg)))
    R = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
    return {"cam_R_m2c": R, "cam_t_m2c": [float(x) for x in t_mm], "obj_bb": [5, 4, 10, 6], "obj_id": obj_id}


@pytest.fixture()
def root(tmp_path):
    _write_folder(tmp_path, 1, [0, 1, 2], lambda f: [_entry(1, [10.0 * f, -20.0, 800.0], 30)])
    # Folder 02 lists several objects per frame; obj 2 is not the first entry.
    _write_folder(tmp_path, 2, [0, 3], lambda f: [_entry(5, [1, 2, 3]), _entry(2, [-50.0, 25.0, 1000.0 + f], 90),
                                                 _entry(9, [4, 5, 6])])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "models_info.yml").write_text(yaml.safe_dump(
        {1: {"diameter": 102.1, "min_x": -37.9, "min_y": -38.8, "min_z": -45.9, "size_x": 75.9, "size_y": 77.6,
             "size_z": 91.8}}))
    trimesh.creation.box(extents=[100.0, 50.0, 20.0]).export(tmp_path / "models" / "obj_01.ply", encoding="ascii")
    return tmp_path


def test_splits_units_and_folder02_rule(root):
    train = LinemodDataset(root, split="train")
    assert train.index == [(1, 0), (1, 1), (2, 0)]
    assert LinemodDataset(root, [2], split="test").index == [(2, 3)]
    assert len(LinemodDataset(root, [1], split="all")) == 3

    f = train.load_frame(1, 1)
    assert f.rgb[0, 0].tolist() == [30, 20, 10]  # BGR file -> RGB
    np.testing.assert_allclose(f.depth_m, 0.701, rtol=1e-6)  # mm -> m
    np.testing.assert_allclose(f.K, np.asarray(K_INFO).reshape(3, 3))
    (g,) = f.gt
    assert g.class_id == 1 and g.mask.dtype == bool and g.mask.sum() == 60
    np.testing.assert_allclose(g.t, [0.01, -0.02, 0.8])
    np.testing.assert_allclose(g.R @ [1, 0, 0], [np.cos(np.pi / 6), np.sin(np.pi / 6), 0], atol=1e-12)  # row-major

    (g2,) = train.load_frame(2, 0).gt
    assert g2.class_id == 2
    np.testing.assert_allclose(g2.t, [-0.05, 0.025, 1.0])


def test_models_and_k_fallback(root):
    ds = LinemodDataset(root, [1])
    assert ds.models_info[1]["diameter"] == pytest.approx(102.1)
    pts = ds.model_points(1)
    np.testing.assert_allclose(pts.max(axis=0) - pts.min(axis=0), [0.1, 0.05, 0.02], rtol=1e-6)  # mm -> m
    (root / "data" / "01" / "info.yml").unlink()
    np.testing.assert_allclose(LinemodDataset(root, [1]).load_frame(1, 0).K, K_LINEMOD)
