"""The batched pipeline: equal to the published per-object loop, hand-composed refinement, bad input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from densefusion_ros import geometry
from densefusion_ros.catalog import Catalog, ObjectInfo
from densefusion_ros.frame import Frame
from densefusion_ros.models import build_estimator, build_refiner
from densefusion_ros.models.transforms import PUBLISHED_NORMALIZATION, normalize_image
from densefusion_ros.pipeline import FrameResult, InstanceResult, Pipeline, PipelineConfig, validate_frame
from densefusion_ros.sampling import prepare_instance
from tools import bench_pipeline as bench
from tools.bench_pipeline import synthetic_catalog, synthetic_frame

N = 64
H, W = 240, 320


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return build_estimator(num_objects=4, backbone="compact").eval(), build_refiner(num_objects=4).eval()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return synthetic_catalog(4)


@pytest.fixture(scope="module")
def frame() -> Frame:
    return synthetic_frame(3, height=H, width=W, seed=3, min_radius=12, max_radius=40)


def _pipe(nets, catalog, **kw) -> Pipeline:
    est, ref = nets
    kw.setdefault("icp", "none")  # the networks alone: these tests check their stages
    cfg = PipelineConfig(num_points=N, seed=kw.pop("seed", 0), min_points=kw.pop("min_points", 5), **kw)
    return Pipeline(est, catalog, cfg, refiner=ref)


def _assert_same(a: FrameResult, b: FrameResult, atol: float = 1e-4, conf_atol: float = 1e-5) -> None:
    assert [(r.class_id, r.instance, r.box) for r in a.instances] == [(r.class_id, r.instance, r.box) for r in b.instances]
    for x, y in zip(a.instances, b.instances):
        np.testing.assert_allclose(x.R, y.R, atol=atol)
        np.testing.assert_allclose(x.t, y.t, atol=atol)
        assert abs(x.confidence - y.confidence) < conf_atol


def test_batched_equals_per_object_loop(nets, catalog, frame):
    pipe = _pipe(nets, catalog, refine_iterations=2)
    # Two objects with the same crop size share one CNN batch: duplicate one mask's shape elsewhere.
    f = replace(frame, label=frame.label.copy())
    mask = frame.label == 1
    rows, cols = np.nonzero(mask)
    shifted = np.zeros_like(mask)
    dr, dc = (H - 1 - rows.max()) - 0, -cols.min()  # move it to the bottom-left corner
    shifted[rows + dr, cols + dc] = True
    f.label[shifted & (f.label == 0)] = 4
    batched, loop = pipe(f), pipe.run_per_object(f)  # batched: forward_best (fast_head=True)
    plain = _pipe(nets, catalog, refine_iterations=2, fast_head=False, cpu_point_rows=False, fuse_batchnorm=False)
    assert batched.error is None and not batched.skipped, batched.skipped
    assert plain.estimator is nets[0] and pipe.estimator is not nets[0]  # a BatchNorm-folded copy
    _assert_same(plain(f), loop)
    assert len(batched.instances) == 4
    sizes = [(r.box[1] - r.box[0], r.box[3] - r.box[2]) for r in batched.instances]
    assert len(set(sizes)) < len(sizes)  # at least one shared crop size
    _assert_same(batched, loop)


def test_batched_equals_loop_published_backbone(catalog):
    torch.manual_seed(1)
    est, ref = build_estimator(num_objects=4, backbone="psp_resnet18"), build_refiner(num_objects=4)
    f = synthetic_frame(2, height=120, width=160, seed=5, min_radius=8, max_radius=18)
    pipe = Pipeline(est, catalog, PipelineConfig(icp="none", num_points=32, seed=0, min_points=5, refine_iterations=1), refiner=ref)
    _assert_same(pipe(f), pipe.run_per_object(f))


def test_result_types_and_conventions(nets, catalog, frame):
    res = _pipe(nets, catalog)(frame)
    assert isinstance(res, FrameResult) and res.ok and len(res.instances) == 3
    assert set(res.timings_ms) == {"segmentation", "preprocess", "estimator", "refiner", "icp", "track", "total"}
    assert res.timings_ms["total"] >= res.timings_ms["estimator"] > 0
    for r in res.instances:
        assert isinstance(r, InstanceResult)
        assert r.R.shape == (3, 3) and r.R.dtype == np.float64 and r.t.shape == (3,)
        np.testing.assert_allclose(r.R @ r.R.T, np.eye(3), atol=1e-5)
        np.testing.assert_allclose(geometry.quat_to_matrix(r.quaternion_wxyz), r.R, atol=1e-6)
        np.testing.assert_allclose(r.quaternion_xyzw, geometry.wxyz_to_xyzw(r.quaternion_wxyz))
        np.testing.assert_array_equal(r.pose_matrix, np.vstack([np.column_stack([r.R, r.t]), [0, 0, 0, 1]]))
        assert 0 < r.confidence < 1 and r.name == f"obj_{r.class_id}" and r.index == r.class_id - 1
        assert r.mask.shape == (H, W) and r.mask.dtype == bool and r.num_points > 0
        rmin, rmax, cmin, cmax = r.box
        assert (rmax - rmin) % 40 == 0 and (cmax - cmin) % 40 == 0


@pytest.mark.parametrize("iterations", [0, 3])
def test_refinement_matches_hand_composition(nets, catalog, frame, iterations):
    """Estimator + K refiner steps composed with numpy ``geometry.compose`` (fact sheet 4.6 / 4.8)."""
    est, ref = nets
    pipe = _pipe(nets, catalog, refine_iterations=iterations)
    res = pipe(frame)
    for r in res.instances:
        inst = prepare_instance(
            frame.rgb, frame.depth_m, frame.K, frame.label == r.class_id, num_points=N,
            rng=np.random.default_rng([0, r.class_id, 0]), min_points=5,
        )  # fmt: skip
        img = normalize_image(inst.rgb[None], PUBLISHED_NORMALIZATION)
        pts = torch.from_numpy(inst.points[None])
        obj = torch.tensor([r.index])
        with torch.no_grad():
            q, dt, c, emb = est(img, pts, torch.from_numpy(inst.choose[None]), obj)
        best = int(c[0, :, 0].argmax())
        R = geometry.quat_to_matrix(q[0, best].double().numpy())
        t = inst.points[best].astype(np.float64) + dt[0, best].double().numpy()
        for _ in range(iterations):
            p_obj = (inst.points.astype(np.float64) - t) @ R  # R^T (p - t)
            with torch.no_grad():
                q2, t2 = ref(torch.from_numpy(p_obj[None]).float(), emb, obj)
            R, t = geometry.compose(R, t, geometry.quat_to_matrix(q2[0].double().numpy()), t2[0].double().numpy())
        np.testing.assert_allclose(r.R, R, atol=1e-4)
        np.testing.assert_allclose(r.t, t, atol=1e-4)
        assert abs(r.confidence - float(c[0, best, 0])) < 1e-5


def test_seed_repeatability(nets, catalog, frame):
    a, b = _pipe(nets, catalog)(frame), _pipe(nets, catalog)(frame)
    _assert_same(a, b, atol=0)
    c = _pipe(nets, catalog, seed=1)(frame)
    assert any(not np.allclose(x.t, y.t) for x, y in zip(a.instances, c.instances))
    rnd = _pipe(nets, catalog, seed=None)
    assert rnd(frame).ok


def _bad_frames(frame: Frame) -> dict[str, Frame]:
    ok = dict(rgb=frame.rgb, depth_m=frame.depth_m, K=frame.K, label=frame.label)
    return {
        "rgb dtype": Frame(**{**ok, "rgb": frame.rgb.astype(np.float32)}),
        "rgb shape": Frame(**{**ok, "rgb": frame.rgb[..., 0]}),
        "depth shape": Frame(**{**ok, "depth_m": frame.depth_m[:-1]}),
        "depth dtype": Frame(**{**ok, "depth_m": (frame.depth_m * 1000).astype(np.uint16)}),
        "K shape": Frame(**{**ok, "K": np.eye(2)}),
        "K nan": Frame(**{**ok, "K": np.full((3, 3), np.nan)}),
        "all-zero depth": Frame(**{**ok, "depth_m": np.zeros_like(frame.depth_m)}),
        "NaN depth": Frame(**{**ok, "depth_m": np.full_like(frame.depth_m, np.nan)}),
        "label shape": Frame(**{**ok, "label": frame.label[:10]}),
        "label dtype": Frame(**{**ok, "label": frame.label.astype(np.float32)}),
        "mask shape": Frame(**{**ok, "label": None, "masks": {1: np.ones((3, 3), bool)}}),
        "mask key": Frame(**{**ok, "label": None, "masks": {"duck": frame.label == 1}}),
        "mask dtype": Frame(**{**ok, "label": None, "masks": {1: (frame.label == 1).astype(np.float32)}}),
        "rgb None": Frame(**{**ok, "rgb": None}),
    }


def test_bad_frames_are_skipped_with_a_reason(nets, catalog, frame):
    pipe = _pipe(nets, catalog)
    for name, bad in _bad_frames(frame).items():
        with pytest.raises(ValueError):
            validate_frame(bad)
        res = pipe(bad)
        assert res.error and "invalid frame" in res.error and not res.instances, name
    validate_frame(frame)  # the good one passes


def test_bad_instances_are_skipped_with_a_reason(nets, catalog, frame):
    pipe = _pipe(nets, catalog, min_points=30, min_mask_pixels=20)
    masks = {
        1: frame.label == 1,  # fine
        2: np.zeros((H, W), bool),  # empty
        3: np.zeros((H, W), bool),  # too few points: 25 pixels, 20 without depth
        9: frame.label == 3,  # class id not in the catalog
    }
    masks[3][100:105, 100:105] = True
    depth = frame.depth_m.copy()
    depth[100:104, 100:105] = np.nan
    res = pipe(replace(frame, depth_m=depth, label=None, masks=masks))
    assert res.ok and [r.class_id for r in res.instances] == [1]
    reasons = dict(res.skipped)
    assert reasons[2] == "empty mask"
    assert "5 valid depth points" in reasons[3]
    assert "not in the catalog" in reasons[9]
    tiny = {1: np.zeros((H, W), bool)}
    tiny[1][0:2, 0:3] = True
    assert "6 pixels" in dict(pipe(replace(frame, label=None, masks=tiny)).skipped)[1]
    # score threshold: everything below 1.0
    res = _pipe(nets, catalog, score_threshold=0.999)(frame)
    assert not res.instances and all("confidence" in why for _, why in res.skipped)
    # a network index beyond the estimator's objects
    big = Catalog([ObjectInfo("far", 1, 7, Path("none.obj"), np.ones(3))])
    res = Pipeline(nets[0], big, PipelineConfig(icp="none", num_points=N, seed=0))(frame)
    assert not res.instances and "outside" in dict(res.skipped)[1]


class _SpySegmenter(nn.Module):
    """Logits that put channel ``j + 1`` (network index j) where ``label == class_ids[j]``."""

    def __init__(self, label: np.ndarray, class_ids: list[int]) -> None:
        super().__init__()
        self.calls = 0
        onehot = np.stack([label == 0] + [label == c for c in class_ids]).astype(np.float32)
        self.register_buffer("logits", torch.from_numpy(onehot)[None] * 10)
        self.num_classes = len(class_ids) + 1

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert img.shape[-2:] == self.logits.shape[-2:]
        return self.logits


def test_segmenter_channels_and_bypass(nets, frame):
    est, ref = nets
    # class ids differ from network indices: index j <-> class id 10 + j
    cat = Catalog([ObjectInfo(f"o{j}", 10 + j, j, Path("none.obj"), np.ones(3)) for j in range(4)])
    label = np.where(frame.label > 0, frame.label + 9, 0).astype(np.int64)
    seg = _SpySegmenter(label, [10, 11, 12, 13])
    pipe = Pipeline(est, cat, PipelineConfig(icp="none", num_points=N, seed=0, min_points=5), refiner=ref, segmenter=seg)
    res = pipe(replace(frame, label=None))
    assert seg.calls == 1 and res.ok
    assert sorted(r.class_id for r in res.instances) == [10, 11, 12]
    np.testing.assert_array_equal(res.label, label)
    # a label image or external masks bypass the segmenter
    by_label = pipe(replace(frame, label=label))
    by_masks = pipe(replace(frame, label=None, masks={c: label == c for c in (10, 11, 12)}))
    assert seg.calls == 1
    _assert_same(res, by_label, atol=0)
    _assert_same(res, by_masks, atol=0)
    # no segmenter and no masks: the frame is skipped with a reason
    no_seg = Pipeline(est, cat, PipelineConfig(icp="none", num_points=N))(replace(frame, label=None))
    assert no_seg.error and "segmenter" in no_seg.error


def test_segmenter_runs_at_its_training_scale(catalog, frame):
    """``input_scale`` 0.5: the network sees the frame at half size; labels come back full size."""
    from densefusion_ros.models import build_segmenter

    torch.manual_seed(0)
    seg = build_segmenter(num_classes=5).eval()
    seg.metadata = {"input_scale": 0.5, "normalization": dict(PUBLISHED_NORMALIZATION)}
    seen = []
    seg.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[-2:])))
    label = Pipeline(build_estimator(num_objects=4, backbone="compact"), catalog, PipelineConfig(), segmenter=seg).segment(frame.rgb)
    h, w = frame.rgb.shape[:2]
    assert seen == [(h // 2, w // 2)] and label.shape == (h, w)
    small = cv2.resize(frame.rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        logits = seg(normalize_image(small[None], PUBLISHED_NORMALIZATION))
        up = nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    lut = np.array([0] + [catalog.by_index(j).class_id for j in range(4)])
    np.testing.assert_array_equal(label, lut[up[0].argmax(0).numpy()])


def test_instance_rules(nets, catalog, frame):
    label = frame.label.copy()
    label[label == 2] = 1  # class 1 now has two blobs
    f = replace(frame, label=label)
    counts = {}
    for mode in ("class", "largest", "best", "split"):
        res = _pipe(nets, catalog, instances=mode)(f)
        counts[mode] = [(r.class_id, r.instance) for r in res.instances if r.class_id == 1]
    assert counts["class"] == counts["largest"] == counts["best"] == [(1, 0)]
    assert counts["split"] == [(1, 0), (1, 1)]


def test_best_instance_is_the_component_the_model_explains(tmp_path):
    """instances="best": of two blobs labelled as one class, the one a posed model explains wins,
    not the larger one; the other is reported in ``skipped``, the winner is instance 0, and a
    speck under ``candidate_share`` of the largest blob is not estimated."""
    import trimesh

    pytest.importorskip("open3d")
    mesh = tmp_path / "cube.obj"
    trimesh.creation.box(extents=(0.05, 0.05, 0.05)).export(mesh)
    cat = Catalog([ObjectInfo(f"o{j}", j + 1, j, mesh, np.ones(3)) for j in range(4)])
    f, z = 300.0, 0.6  # the cube's front face, 5 cm square, faces the camera 0.6 m away
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    depth = np.full((H, W), z + 0.2, np.float32)
    label = np.zeros((H, W), np.uint8)
    side = int(round(0.05 * f / z))
    label[100 : 100 + side, 40 : 40 + side] = 1
    depth[100 : 100 + side, 40 : 40 + side] = z
    label[60:76, 160:280] = 1  # a flat bar three times the cube's area, 2 cm above the background
    depth[60:76, 160:280] = z + 0.18
    label[200:208, 200:208] = 1  # a speck under a quarter of the largest component: not a candidate
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    scene = Frame(rgb=rgb, depth_m=depth, K=K, label=label)
    cfg = PipelineConfig(num_points=N, seed=0, min_points=5, icp="only", instances="best")  # poses from ICP alone
    cfg.icp_options.model_points = 300
    best = Pipeline(None, cat, cfg)(scene)
    largest = Pipeline(None, cat, replace(cfg, instances="largest"))(scene)
    assert [(r.class_id, r.instance) for r in best.instances] == [(1, 0)]
    assert best.instances[0].mask[100:110, 40:50].all() and largest.instances[0].mask[60:76, 160:280].all()
    assert [cid for cid, why in best.skipped if "scored" in why] == [1]  # the bar; the speck never ran


def test_split_instances_are_the_full_frame_components(nets, catalog, frame):
    """Components labelled inside the class's bounding box equal a full-frame labelling, largest first."""
    label = frame.label.copy()
    label[label == 2] = 1
    label[label == 3] = 1  # class 1: three blobs
    res = Pipeline(nets[0], catalog, PipelineConfig(icp="none", num_points=N, seed=0, min_points=5, instances="split", keep_masks=True))(
        replace(frame, label=label)
    )
    n, cc, stats, _ = cv2.connectedComponentsWithStats((label == 1).astype(np.uint8), connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable") + 1
    got = [r.mask for r in res.instances if r.class_id == 1]
    assert len(got) == len(order) == 3
    for mask, k in zip(got, order):
        np.testing.assert_array_equal(mask, cc == k)


def test_icp_after_refiner_runs(nets, tmp_path, frame):
    import trimesh

    pytest.importorskip("open3d")
    mesh = tmp_path / "box.obj"
    trimesh.creation.box(extents=(0.05, 0.05, 0.05)).export(mesh)
    cat = Catalog([ObjectInfo(f"o{j}", j + 1, j, mesh, np.ones(3)) for j in range(4)])
    est, ref = nets
    cfg = PipelineConfig(num_points=N, seed=0, min_points=5, icp="after")
    cfg.icp_options.model_points = 300
    cfg.icp_options.init_rotations = 4
    res = Pipeline(est, cat, cfg, refiner=ref)(frame)
    assert res.ok and len(res.instances) == 3 and res.timings_ms["icp"] > 0
    assert all(r.icp_fitness is not None for r in res.instances)
    only = Pipeline(None, cat, replace(cfg, icp="only"))(frame)
    assert len(only.instances) == 3 and all(np.isfinite(r.t).all() for r in only.instances)
    verify = Pipeline(est, cat, replace(cfg, icp="verify"), refiner=ref)(frame)
    checked = [cid for cid, why in verify.skipped if "fails the depth check" in why]  # random networks: some poses are off
    assert len(verify.instances) + len(checked) == 3 and verify.instances and verify.timings_ms["icp"] > 0
    for r in verify.instances:  # a proper rotation, and the network's confidence kept
        assert np.isfinite(r.t).all() and np.allclose(r.R @ r.R.T, np.eye(3), atol=1e-6) and np.linalg.det(r.R) > 0
    confidence = {r.class_id: r.confidence for r in res.instances}
    assert all(r.confidence == confidence[r.class_id] for r in verify.instances)
    # a verified pose over verify_max_violation is not published (a negative limit fails every pose)
    strict = replace(cfg, icp="verify", icp_options=replace(cfg.icp_options, verify_max_violation=-1.0))
    gated = Pipeline(est, cat, strict, refiner=ref)(frame)
    assert gated.ok and gated.instances == []
    assert sorted(cid for cid, why in gated.skipped if "fails the depth check" in why) == sorted(r.class_id for r in res.instances)
    # nor one that verification fitted to no observed points (a min_fitness above 1 fits none; any violation passes)
    unfit = replace(cfg, icp="verify", icp_options=replace(cfg.icp_options, min_fitness=1.01, verify_max_violation=1.0))
    refused = Pipeline(est, cat, unfit, refiner=ref)(frame)
    assert refused.ok and refused.instances == []
    fits = "that fits its observed points: ICP fitness"
    assert sorted(cid for cid, why in refused.skipped if fits in why) == sorted(r.class_id for r in res.instances), refused.skipped
    # nor one with more than verify_max_seen_violation of the points the camera would see in front of the depth
    # (a negative limit fails every pose that verification fitted; any violation of all the points passes)
    unseen = replace(cfg, icp="verify", icp_options=replace(cfg.icp_options, verify_max_violation=1.0, verify_max_seen_violation=-1.0))
    hidden = Pipeline(est, cat, unseen, refiner=ref)(frame)
    assert hidden.ok and hidden.instances == []
    seen_through = sorted(cid for cid, why in hidden.skipped if "of the model points the camera would see are in front" in why)
    assert seen_through and set(seen_through) <= {r.class_id for r in res.instances}, hidden.skipped


def test_bench_prints_a_row_per_device_and_precision(capsys):
    """CPU fp32 always; CUDA fp32 and fp16 rows when a GPU is present."""
    args = ["--objects", "1", "--backbones", "compact", "--num-points", "32", "--iterations", "1",
            "--height", "120", "--width", "160", "--repeats", "1", "--warmup", "0"]  # fmt: skip
    assert bench.main(args) == 0
    rows = [line.split()[:4] for line in capsys.readouterr().out.splitlines() if not line.startswith(("#", "device"))]
    expected = [["cpu", "fp32", "compact", "1"]]
    if torch.cuda.is_available():
        expected += [["cuda", "fp32", "compact", "1"], ["cuda", "fp16", "compact", "1"]]
    assert rows == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_fp32_and_fp16(nets, catalog, frame, monkeypatch):
    # TF32 convolutions / matmuls would differ from the CPU by ~1e-3 and could move the argmax
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = _pipe(nets, catalog)(frame)
    try:
        gpu = _pipe(nets, catalog, device="cuda")
        batched = gpu(frame)
        _assert_same(batched, cpu, atol=1e-3, conf_atol=1e-4)
        _assert_same(batched, gpu.run_per_object(frame), atol=1e-3, conf_atol=1e-4)
        for per_object in (False, True):
            res = _pipe(nets, catalog, device="cuda", fp16=True, per_object=per_object)(frame)
            assert res.ok and [r.class_id for r in res.instances] == [r.class_id for r in cpu.instances]
            for r in res.instances:
                assert np.isfinite(r.t).all() and np.isfinite(r.R).all() and 0 <= r.confidence <= 1
            assert res.timings_ms["estimator"] > 0 and res.timings_ms["refiner"] > 0
    finally:
        nets[0].cpu(), nets[1].cpu()  # Pipeline moved the shared module fixtures


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("fp16", [False, True])
def test_cuda_graphs_equal_eager(nets, catalog, frame, fp16):
    """Replayed CUDA graphs give the eager results, also when crop sizes and counts change between frames."""
    other = synthetic_frame(2, height=H, width=W, seed=11, min_radius=15, max_radius=50)
    try:
        graphed = _pipe(nets, catalog, device="cuda", fp16=fp16)
        eager = _pipe(nets, catalog, device="cuda", fp16=fp16, cuda_graphs=False)
        atol, conf_atol = (1e-3, 1e-3) if fp16 else (1e-5, 1e-6)
        for f in (frame, other) * 3:  # eager, captured at the second sighting, then replayed
            _assert_same(graphed(f), eager(f), atol=atol, conf_atol=conf_atol)
        assert graphed._embed_net.enabled and graphed._head_net.enabled and graphed._refine_net.enabled
        assert len(graphed._head_net) == 2  # one graph per instance count (3 and 2)
        assert len(graphed._embed_net) >= 2
    finally:
        nets[0].cpu(), nets[1].cpu()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_label_ids_equal_unique(dtype):
    from densefusion_ros.pipeline import _label_ids

    rng = np.random.default_rng(0)
    for top in (1, 5, 255):
        label = (rng.integers(0, top + 1, (48, 64)) * (rng.random((48, 64)) < 0.3)).astype(dtype)
        np.testing.assert_array_equal(_label_ids(label), np.unique(label))
    if dtype == np.uint16:
        label = np.zeros((4, 4), dtype)
        label[0, 0] = 65535
        np.testing.assert_array_equal(_label_ids(label), [0, 65535])
    labels = rng.choice(np.array([0, 3, 7, 200], dtype), size=(48, 64))  # sparse ids
    np.testing.assert_array_equal(_label_ids(labels), np.unique(labels))
    np.testing.assert_array_equal(_label_ids(np.array([[-1, 5]])), [-1, 5])  # negative ids: np.unique


def test_warm_up_builds_every_objects_geometry(nets, catalog, monkeypatch):
    """A node's first frame of an object does not pay for its model geometry: ``warm_up`` builds
    it for every catalog object (and runs the networks), and later frames reuse it."""
    from densefusion_ros.verify import ModelGeometry

    built = []
    build = ModelGeometry.build.__func__
    monkeypatch.setattr(ModelGeometry, "build", classmethod(lambda cls, *a, **k: built.append(1) or build(cls, *a, **k)))
    pipe = _pipe(nets, catalog, icp="verify")
    pipe.warm_up()
    assert len(built) == len(catalog)
    for info in catalog:
        pipe.model_geometry(info)
    assert len(built) == len(catalog)
