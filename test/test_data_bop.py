"""BOP reader and writer (densefusion_ros.data.bop): file layout, mm <-> m, masks, K, models_info."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import trimesh
import yaml
from scipy.spatial.transform import Rotation

from densefusion_ros.catalog import Catalog
from densefusion_ros.data.bop import BopDataset, BopWriter, evenly_spaced, export_models, mask_bbox, models_info_from_catalog, paint_labels
from densefusion_ros.frame import GtObject

H, W = 48, 64
K = np.array([[60.0, 0.0, 31.5], [0.0, 61.0, 23.5], [0.0, 0.0, 1.0]])


@pytest.fixture()
def catalog(tmp_path):
    """A two-object catalog with meshes next to the YAML (one box, one symmetric cylinder)."""
    (tmp_path / "meshes").mkdir()
    trimesh.creation.box(extents=[0.1, 0.06, 0.04]).export(tmp_path / "meshes" / "box.obj")
    trimesh.creation.cylinder(radius=0.03, height=0.08).export(tmp_path / "meshes" / "can.obj")
    doc = {
        "objects": [
            {"name": "box", "class_id": 3, "mesh": "meshes/box.obj", "scale": 1.0},
            {"name": "can", "class_id": 7, "mesh": "meshes/can.obj", "scale": 1.0, "symmetric": True,
             "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0.01]}],
             "symmetries_discrete": [np.diag([1.0, -1.0, -1.0, 1.0]).reshape(16).tolist()]},
        ]
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Catalog.load(path)


def _frame(rng):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.integers(300, 1500, (H, W)).astype(np.uint16)
    depth[0, :5] = 0
    m1 = np.zeros((H, W), bool)
    m1[10:20, 5:30] = True
    m2 = np.zeros((H, W), bool)
    m2[30:40, 40:60] = True
    full2 = m2.copy()
    full2[25:40, 40:60] = True  # partly occluded
    R1 = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    gts = [GtObject(3, R1, np.array([0.01, -0.02, 0.5])), GtObject(7, np.eye(3), np.array([0.1, 0.05, 0.8]))]
    return rgb, depth, gts, [m1, m2], [m1, full2]


def test_round_trip_units_masks_and_camera(tmp_path, catalog):
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    frames = {}
    with BopWriter(root, "train") as w:
        for scene_id, im_id in [(0, 0), (0, 1), (2, 0)]:
            frames[scene_id, im_id] = _frame(rng)
            rgb, depth, gts, vis, full = frames[scene_id, im_id]
            w.write_frame(scene_id, im_id, rgb, depth, K, 1.0, gts, vis, full)
        w.write_models_info(catalog)
        w.write_catalog(catalog)

    scene = root / "train" / "000000"
    for name in ["scene_camera.json", "scene_gt.json", "scene_gt_info.json", "rgb/000001.png",
                 "depth/000001.png", "mask_visib/000001_000001.png", "mask/000001_000001.png"]:
        assert (scene / name).is_file(), name
    stored = json.loads((scene / "scene_gt.json").read_text())
    assert stored["1"][0]["obj_id"] == 3
    np.testing.assert_allclose(stored["1"][0]["cam_t_m2c"], [10.0, -20.0, 500.0])  # mm on disk
    assert json.loads((scene / "scene_camera.json").read_text())["0"]["depth_scale"] == 1.0

    ds = BopDataset(root, "train")
    assert ds.index == [(0, 0), (0, 1), (2, 0)] and len(ds) == 3
    for i, key in enumerate(ds.index):
        rgb, depth, gts, vis, full = frames[key]
        f = ds[i]
        assert f.rgb.dtype == np.uint8 and np.array_equal(f.rgb, rgb)  # RGB order kept
        assert f.depth_m.dtype == np.float32
        np.testing.assert_allclose(f.depth_m, depth * 0.001, rtol=1e-6)  # mm -> m
        np.testing.assert_allclose(f.K, K)
        assert [g.class_id for g in f.gt] == [3, 7]
        for g, ref, m in zip(f.gt, gts, vis):
            np.testing.assert_allclose(g.R, ref.R, atol=1e-12)
            np.testing.assert_allclose(g.t, ref.t, atol=1e-12)  # metres again
            assert g.mask.dtype == bool and np.array_equal(g.mask, m)
        assert f.gt[0].visib_fract == pytest.approx(1.0)
        assert f.gt[1].visib_fract == pytest.approx(200 / 300)
        assert f.label is None
    info = ds.gt_info(0, 0)[1]
    assert info["bbox_visib"] == [40, 30, 20, 10] and info["bbox_obj"] == [40, 25, 20, 15]
    assert info["px_count_all"] == 300 and info["px_count_visib"] == 200
    assert info["px_count_valid"] == int((frames[0, 0][1][frames[0, 0][4][1]] > 0).sum())

    labelled = BopDataset(root, "train", with_label=True)[0]
    assert set(np.unique(labelled.label)) == {0, 3, 7}
    assert (labelled.label == 3).sum() == vis[0].sum()

    # models_info in mm with symmetries converted; catalog copy with an absolute mesh path
    mi = ds.models_info
    assert set(mi) == {3, 7}
    assert mi[3]["size_x"] == pytest.approx(100.0, abs=1e-3) and mi[3]["min_y"] == pytest.approx(-30.0, abs=1e-3)
    assert mi[3]["diameter"] == pytest.approx(1000 * np.sqrt(0.1**2 + 0.06**2 + 0.04**2), rel=1e-4)
    assert "symmetries_continuous" not in mi[3]
    assert mi[7]["symmetries_continuous"] == [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 10.0]}]
    assert np.allclose(mi[7]["symmetries_discrete"][0], np.diag([1.0, -1.0, -1.0, 1.0]).ravel())
    copied = yaml.safe_load((root / "catalog.yaml").read_text())
    assert copied["objects"][0]["mesh"] == str((tmp_path / "meshes" / "box.obj").resolve())
    assert Catalog.load(root / "catalog.yaml").by_class_id(7).symmetric


def test_reads_a_handwritten_scene_with_depth_scale_and_jpg(tmp_path):
    """A scene written straight from the format spec (depth_scale 0.1 as BOP YCB-V, jpg colour)."""
    scene = tmp_path / "test" / "000048"
    (scene / "rgb").mkdir(parents=True)
    (scene / "depth").mkdir()
    (scene / "mask_visib").mkdir()
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[..., 2] = 200  # red in BGR
    cv2.imwrite(str(scene / "rgb" / "000007.jpg"), bgr)
    cv2.imwrite(str(scene / "depth" / "000007.png"), np.full((H, W), 12345, np.uint16))
    mask = np.zeros((H, W), np.uint8)
    mask[5:9, 6:10] = 255
    cv2.imwrite(str(scene / "mask_visib" / "000007_000000.png"), mask)
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    (scene / "scene_camera.json").write_text(json.dumps({"7": {"cam_K": K.ravel().tolist(), "depth_scale": 0.1}}))
    (scene / "scene_gt.json").write_text(
        json.dumps({"7": [{"cam_R_m2c": R.ravel().tolist(), "cam_t_m2c": [-15.5, 20.0, 730.0], "obj_id": 12}]}))
    f = BopDataset(tmp_path, "test").load_frame(48, 7)
    assert f.rgb[0, 0, 0] > 190 and f.rgb[0, 0, 2] < 10
    np.testing.assert_allclose(f.depth_m, 1.2345, rtol=1e-6)  # 12345 * 0.1 mm
    np.testing.assert_allclose(f.gt[0].t, [-0.0155, 0.02, 0.73])
    np.testing.assert_allclose(f.gt[0].R, R)
    np.testing.assert_allclose(f.gt[0].R @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # row-major
    assert f.gt[0].mask.sum() == 16 and f.gt[0].visib_fract == 1.0  # no gt_info file: default 1
    # the pieces the training samples read with (no second reader)
    ds = BopDataset(tmp_path, "test")
    rgb, depth, K_read = ds.read_image(48, 7)
    assert np.array_equal(rgb, f.rgb) and np.array_equal(depth, f.depth_m) and np.array_equal(K_read, f.K)
    assert np.array_equal(ds.read_mask(48, 7, 0), f.gt[0].mask) and ds.read_mask(48, 7, 1) is None
    (scene / "depth" / "000007.png").unlink()
    assert not ds.read_image(48, 7)[1].any()  # no depth file: zeros


def test_evenly_spaced_thinning():
    assert evenly_spaced(5, None) == [0, 1, 2, 3, 4] and evenly_spaced(5, 5) == evenly_spaced(5, 9) == [0, 1, 2, 3, 4]
    assert evenly_spaced(10, 4) == [0, 3, 6, 9] and evenly_spaced(10, 1) == [0] and evenly_spaced(10, 0) == []
    for n, k in [(7, 3), (100, 30), (31, 30), (1000, 17)]:
        ids = evenly_spaced(n, k)  # the formula the three copies used
        assert ids == sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
        assert ids[0] == 0 and ids[-1] == n - 1 and len(ids) == k


def test_paint_labels_far_to_near():
    near, far = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    near[:2, :2] = True
    far[1:3, 1:3] = True
    label = paint_labels((4, 4), [(0.5, near, 3), (0.9, far, 7)], np.int64)
    assert label.dtype == np.int64 and label[1, 1] == 3 and label[2, 2] == 7 and label[3, 3] == 0
    assert paint_labels((2, 2), []).dtype == np.uint16


def test_writer_rejects_bad_input_and_mask_bbox(tmp_path):
    w = BopWriter(tmp_path, "train")
    rgb, depth, gts, vis, _ = _frame(np.random.default_rng(1))
    with pytest.raises(ValueError):
        w.write_frame(0, 0, rgb, depth.astype(np.float32), K, 1.0, gts, vis)
    with pytest.raises(ValueError):
        w.write_frame(0, 0, rgb, depth, K, 1.0, gts, vis[:1])
    assert mask_bbox(np.zeros((4, 4), bool)) == [-1, -1, -1, -1]


def test_export_models_in_mm(tmp_path, catalog):
    paths = export_models(catalog, tmp_path)
    assert [p.name for p in paths] == ["obj_000003.ply", "obj_000007.ply"]
    mesh = trimesh.load(paths[0], process=False)
    np.testing.assert_allclose(mesh.extents, [100.0, 60.0, 40.0], atol=1e-3)
    assert export_models(catalog, tmp_path / "none", max_faces=10) == []
    assert models_info_from_catalog(catalog)[3]["size_z"] == pytest.approx(40.0, abs=1e-3)
