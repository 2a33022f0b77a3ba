"""The pybullet generator (densefusion_ros.data.synth): BOP layout, GT poses against the rendered
masks and depth, the K -> OpenGL projection, the depth noise model and --sequence videos. CPU only, ~10 s."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree

from densefusion_ros import cli, geometry
from densefusion_ros.catalog import Catalog
from densefusion_ros.data import synth
from densefusion_ros.data.bop import BopDataset

pytest.importorskip("pybullet")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "config" / "objects" / "demo.yaml"
W, H = 160, 120


def _check_gt(root: Path, split: str, depth_tol_m: float) -> int:
    """Every instance's GT pose agrees with the rendered segmentation and depth; returns #checked."""
    catalog = Catalog.load(root / "catalog.yaml")
    ds = BopDataset(root, split)
    checked, shifts = 0, []
    for (scene_id, im_id), frame in zip(ds.index, ds):
        K = frame.K
        for gt_idx, g in enumerate(frame.gt):
            obj = catalog.by_class_id(g.class_id)
            if g.mask.sum() < 30:
                continue
            # 1) Reprojection: model points of a mostly visible object land on its visible mask.
            uv = geometry.project(geometry.transform_points(obj.sample_points(500), g.R, g.t), K)
            inside = (uv[:, 0] > -0.5) & (uv[:, 0] < W - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < H - 0.5)
            px = np.round(uv[inside]).astype(int)
            dist = cv2.distanceTransform((~g.mask).astype(np.uint8), cv2.DIST_L2, 5)[px[:, 1], px[:, 0]]
            if g.visib_fract > 0.9:
                assert dist.mean() < 0.5, (obj.name, dist.mean())
                centre = g.R @ obj.bbox_center + g.t
                u, v = (K @ centre)[:2] / centre[2]
                assert g.mask[int(round(v)), int(round(u))] or dist.mean() < 0.2, obj.name
            full = cv2.imread(str(ds.scene_dir(scene_id) / f"mask/{im_id:06d}_{gt_idx:06d}.png"), 0) > 0
            core = cv2.erode(full.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if (core & ~g.mask).sum() <= 2 and not (full[0].any() or full[-1].any() or full[:, 0].any()
                                                    or full[:, -1].any()):  # unoccluded, untruncated
                shift = np.mean(np.nonzero(full), axis=1) - np.mean(np.nonzero(g.mask), axis=1)
                assert np.abs(shift).max() < 0.6, (obj.name, shift)  # small masks: quantisation
                shifts.append(shift)
            # 2) Depth: back-projected mask pixels lie on the model surface in the GT pose.
            cam = geometry.backproject(frame.depth_m, K, *np.nonzero(g.mask & (frame.depth_m > 0)))
            d, _ = cKDTree(obj.sample_points(20000)).query((cam - g.t) @ g.R)
            assert np.median(d) < depth_tol_m, (obj.name, np.median(d))
            checked += 1
    # Sub-pixel: the renderer's masks and the silhouettes rasterised from K and the GT pose have the
    # same centroids; a half-pixel convention error would shift all of them by ~0.5 px.
    assert shifts, "no unoccluded object to compare"
    assert np.abs(np.mean(shifts, axis=0)).max() < 0.2, shifts
    return checked


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    rc = cli.main(["synth", "--objects", str(DEMO), "--out", str(out), "--scenes", "1", "--frames-per-scene", "2",
                   "--seed", "5", "--width", str(W), "--height", str(H), "--no-noise", "--quiet"])
    assert rc == 0
    return out


def test_bop_layout_and_config(clean_dataset):
    out = clean_dataset
    scene = out / "train" / "000000"
    for name in ["scene_camera.json", "scene_gt.json", "scene_gt_info.json", "rgb/000000.png", "rgb/000001.png",
                 "depth/000001.png", "mask_visib/000001_000000.png", "mask/000001_000000.png"]:
        assert (scene / name).is_file(), name
    for name in ["catalog.yaml", "synth_config.json", "models/models_info.json", "models/obj_000004.ply"]:
        assert (out / name).is_file(), name
    cam = json.loads((scene / "scene_camera.json").read_text())["0"]
    # D435 colour intrinsics scaled from 640x480 to 160x120
    np.testing.assert_allclose(cam["cam_K"], [153.75, 0, 80, 0, 153.75, 60, 0, 0, 1])
    assert cam["depth_scale"] == 1.0
    config = json.loads((out / "synth_config.json").read_text())
    assert config["seed"] == 5 and config["config"]["noise"] is False and config["renderer_used"] in ("egl", "tiny")
    info = json.loads((out / "models" / "models_info.json").read_text())
    assert info["4"]["symmetries_continuous"][0]["axis"] == [0.0, 1.0, 0.0]
    depth = cv2.imread(str(scene / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and 300 < np.median(depth[depth > 0]) < 3000  # mm
    ds = BopDataset(out, "train")
    assert len(ds) == 2 and sum(len(f.gt) for f in ds) >= 2
    for g in ds[0].gt:  # poses are proper rotations and in front of the camera
        np.testing.assert_allclose(g.R @ g.R.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(g.R) > 0 and 0.2 < g.t[2] < 2.0


def test_gt_matches_rendered_masks_and_depth(clean_dataset):
    assert _check_gt(clean_dataset, "train", depth_tol_m=0.005) >= 2


def test_tiny_renderer_with_noise_is_aligned_too(tmp_path):
    cfg = synth.SynthConfig(width=W, height=H, fx=153.75, fy=153.75, cx=80.0, cy=60.0, renderer="tiny",
                            export_models=False)
    stats = synth.generate(Catalog.load(DEMO), tmp_path, scenes=1, frames_per_scene=1, seed=7, cfg=cfg,
                           progress=False)
    assert stats["renderer"] == "tiny" and stats["frames"] == 1
    assert _check_gt(tmp_path, "train", depth_tol_m=0.008) >= 1
    depth = cv2.imread(str(tmp_path / "train" / "000000" / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert 0.001 < (depth == 0).mean() < 0.5  # holes from edges, shadows and dropouts
    # the same seed renders the same scene again (each scene has its own random stream)
    synth.generate(Catalog.load(DEMO), tmp_path / "again", scenes=1, frames_per_scene=1, seed=7, cfg=cfg,
                   progress=False)
    gt_files = [d / "train" / "000000" / "scene_gt.json" for d in (tmp_path, tmp_path / "again")]
    assert json.loads(gt_files[0].read_text()) == json.loads(gt_files[1].read_text())


def test_projection_matches_pinhole():
    K = np.array([[600.0, 0.0, 300.3], [0.0, 580.0, 250.7], [0.0, 0.0, 1.0]])
    width, height, near, far = 640, 480, 0.05, 5.0
    P = synth.projection_from_K(K, width, height, near, far)
    rng = np.random.default_rng(0)
    cam = np.column_stack([rng.uniform(-0.3, 0.3, 50), rng.uniform(-0.3, 0.3, 50), rng.uniform(0.3, 3, 50)])
    gl = cam * [1, -1, -1]  # OpenCV -> OpenGL camera
    clip = np.column_stack([gl, np.ones(50)]) @ P.T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1) / 2 * width - 0.5  # pixel centres at integers, row 0 at the top
    v = (1 - ndc[:, 1]) / 2 * height - 0.5
    np.testing.assert_allclose(np.column_stack([u, v]), geometry.project(cam, K), atol=1e-9)
    buf = (ndc[:, 2] + 1) / 2
    np.testing.assert_allclose(synth.depth_buffer_to_metres(buf, near, far), cam[:, 2], rtol=1e-5)
    # extrinsics: a camera 1 m above the origin looking down sees the origin on the optical axis
    R_cw, t_cw = synth.look_at(np.array([0.0, 0.0, 1.0]), np.zeros(3))
    np.testing.assert_allclose(R_cw @ np.zeros(3) + t_cw, [0, 0, 1], atol=1e-12)
    V = synth.view_from_extrinsics(R_cw, t_cw)
    np.testing.assert_allclose(V @ [0, 0, 0, 1], [0, 0, -1, 1], atol=1e-12)  # OpenGL looks along -z


def test_depth_noise_model():
    cfg = synth.SynthConfig(width=200, height=100, dropout_prob=0.0, edge_drop_prob=0.0)
    K = np.array([[600.0, 0, 100], [0, 600.0, 50], [0, 0, 1]])
    rng = np.random.default_rng(0)
    stds = []
    for z in (0.5, 1.5):
        depth = np.full((100, 200), z, np.float32)
        noisy = synth.realsense_depth_noise(depth, K, np.random.default_rng(1), cfg)
        stds.append(np.std(noisy[noisy > 0] - z))
    assert stds[1] > 4 * stds[0]  # grows like z^2
    depth = np.full((100, 200), 1.0, np.float32)
    depth[:, 100:150] = 0.5  # a near box: the band on its left is hidden from the right imager
    depth[:, 190:] = 4.0  # beyond depth_max
    noisy = synth.realsense_depth_noise(depth, K, rng, cfg)
    shadow = 600 * synth.D435_BASELINE_M * (1 / 0.5 - 1 / 1.0)  # 30 px
    band = (noisy[:, 100 - int(shadow) + 2 : 100] == 0).mean()
    assert band > 0.95 and (noisy[:, 155:185] == 0).mean() < 0.1 and (noisy[:, 192:] == 0).all()
    raw = synth.depth_to_mm_uint16(noisy)
    assert raw.dtype == np.uint16 and abs(int(np.median(raw[:, 110:140])) - 500) < 10


# ---------------------------------------------------------------------------------------------
# --sequence: one 30 Hz video per scene

SEQ_FRAMES = 8


def _sequence_run(out: Path, seed: int = 3) -> int:
    return cli.main(["synth", "--objects", str(DEMO), "--out", str(out), "--split", "seq", "--scenes", "1",
                     "--frames-per-scene", str(SEQ_FRAMES), "--sequence", "--seed", str(seed), "--width", str(W),
                     "--height", str(H), "--no-export-models", "--quiet"])


def _world_poses(root: Path, split: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict]]:
    """Per frame in index order: the camera ``(centre in the world, R_cw)`` from scene_camera.json and
    ``{obj_id: (R_wo, t_wo)}``, the objects' world poses from the GT (metres)."""
    ds = BopDataset(root, split, load_masks=False)
    cams, objs = [], []
    for scene_id, im_id in ds.index:
        cam = ds.scene_camera(scene_id)[im_id]
        R_cw, t_cw = np.reshape(cam["cam_R_w2c"], (3, 3)), np.asarray(cam["cam_t_w2c"]) / 1000.0
        cams.append((-R_cw.T @ t_cw, R_cw))
        objs.append({e["obj_id"]: (R_cw.T @ np.reshape(e["cam_R_m2c"], (3, 3)),
                                   R_cw.T @ (np.asarray(e["cam_t_m2c"]) / 1000.0 - t_cw))
                     for e in ds.scene_gt(scene_id)[im_id]})
    return cams, objs


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


@pytest.fixture(scope="module")
def sequence_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_seq") / "ds"
    assert _sequence_run(out) == 0
    return out


def test_sequence_frames_are_consecutive_and_stamped(sequence_dataset):
    ds = BopDataset(sequence_dataset, "seq")
    assert ds.index == [(0, i) for i in range(SEQ_FRAMES)]
    assert [f.stamp for f in ds] == pytest.approx([i / 30 for i in range(SEQ_FRAMES)])
    assert sum(len(f.gt) for f in ds) >= SEQ_FRAMES
    config = json.loads((sequence_dataset / "synth_config.json").read_text())
    assert config["sequence"] is True and config["fps"] == 30 and config["frames_per_scene"] == SEQ_FRAMES


def test_sequence_camera_moves_smoothly(sequence_dataset):
    cams, objs = _world_poses(sequence_dataset, "seq")
    centres = np.array([c for c, _ in cams])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert np.all(steps > 1e-3) and np.all(steps < 0.04), steps  # a moving hand-held camera, not random views
    assert np.linalg.norm(np.diff(centres, 2, axis=0), axis=1).max() < 0.01  # no jerks
    turns = [_angle_deg(R1 @ R0.T) for (_, R0), (_, R1) in zip(cams, cams[1:])]
    assert max(turns) < 4.0, turns
    # The GT poses and the written camera poses agree: an object's world pose is the same in every frame.
    for obj_id in objs[0]:
        seen = [o[obj_id] for o in objs if obj_id in o]
        if len(seen) > 1 and np.linalg.norm(seen[-1][1] - seen[0][1]) < 1e-3:  # not pushed
            assert max(np.abs(t - seen[0][1]).max() for _, t in seen) < 1e-6


def test_sequence_pushes_objects_along_the_table(tmp_path):
    """With pushes short enough to finish within the 8 frames: a pushed object slides 10-25 cm and turns
    about the vertical only (its height and tilt stay), the resting ones do not move, and the GT stays
    aligned with the rendered masks and depth."""
    cfg = synth.SynthConfig(width=W, height=H, fx=153.75, fy=153.75, cx=80.0, cy=60.0, noise=False)
    seq = synth.SequenceConfig(push_s=(0.15, 0.2), pass_prob=0.0)
    synth.generate(Catalog.load(DEMO), tmp_path, split="seq", frames_per_scene=SEQ_FRAMES, seed=3, cfg=cfg,
                   progress=False, sequence=seq)
    _, objs = _world_poses(tmp_path, "seq")
    catalog = Catalog.load(DEMO)
    pushed, resting = [], []
    for obj_id in objs[0].keys() & objs[-1].keys():
        (R0, t0), (R1, t1) = objs[0][obj_id], objs[-1][obj_id]
        if np.linalg.norm(t1 - t0) > 1e-3:
            pushed.append(obj_id)
            centre = catalog.by_class_id(obj_id).bbox_center  # the centre of mass, which slides straight
            shift = (R1 @ centre + t1) - (R0 @ centre + t0)
            assert 0.10 - 1e-6 < np.linalg.norm(shift[:2]) < 0.25 + 1e-6 and abs(shift[2]) < 1e-6, shift
            assert abs(t1[2] - t0[2]) < 1e-6
            turn = R1 @ R0.T
            assert abs(turn[2, 2] - 1) < 1e-9 and _angle_deg(turn) <= 90.0 + 1e-6  # about z only
        else:
            resting.append(obj_id)
            assert all(np.abs(o[obj_id][1] - t0).max() < 1e-6 for o in objs if obj_id in o)
    assert 1 <= len(pushed) <= 2 and resting, (pushed, resting)
    assert _check_gt(tmp_path, "seq", depth_tol_m=0.005) >= SEQ_FRAMES


def test_sequence_is_repeatable(sequence_dataset, tmp_path):
    assert _sequence_run(tmp_path) == 0
    for name in ["scene_camera.json", "scene_gt.json", "scene_gt_info.json", f"rgb/{SEQ_FRAMES - 1:06d}.png",
                 f"depth/{SEQ_FRAMES - 1:06d}.png"]:
        a, b = (root / "seq" / "000000" / name for root in (sequence_dataset, tmp_path))
        assert a.read_bytes() == b.read_bytes(), name
