"""The YCB-Video catalog with checkpoints in the published layout: "I have the real YCB objects and
the published weights". Meshes stand in for the dataset's (boxes of the objects' rough sizes), the
weights are seeded in the published layout; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import Frame
from densefusion_ros.models import build_estimator, build_refiner
from densefusion_ros.models.checkpoint import YCB_OBJECT_NAMES, to_published_state_dict
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.resources import share_path

CATALOG = share_path("config", "objects", "ycb_video.yaml")
PUBLISHED_SYMMETRIC = [12, 15, 18, 19, 20]  # DenseFusion's sym_list for YCB-Video (network indices)


@pytest.fixture(scope="module")
def ycb_models(tmp_path_factory):
    """A YCB_Video_Dataset/models-like folder: <name>/textured.obj for each of the 21 objects."""
    root = tmp_path_factory.mktemp("ycb_models")
    for k, name in enumerate(YCB_OBJECT_NAMES):
        (root / name).mkdir()
        trimesh.creation.box(extents=(0.05 + 0.003 * k, 0.07, 0.09)).export(root / name / "textured.obj")
    return root


def test_the_catalog_is_the_published_order_and_symmetric_set(ycb_models, monkeypatch):
    monkeypatch.setenv("YCB_VIDEO_MODELS", str(ycb_models))
    catalog = Catalog.load(CATALOG)
    assert catalog.names == list(YCB_OBJECT_NAMES)
    assert [o.index for o in catalog] == list(range(21)) and [o.class_id for o in catalog] == list(range(1, 22))
    assert [o.index for o in catalog if o.symmetric] == PUBLISHED_SYMMETRIC
    assert catalog.by_name("025_mug").mesh_path == ycb_models / "025_mug" / "textured.obj"


def test_an_unset_models_folder_is_named(monkeypatch):
    monkeypatch.delenv("YCB_VIDEO_MODELS", raising=False)
    with pytest.raises(ValueError, match="YCB_VIDEO_MODELS"):
        Catalog.load(CATALOG)


def test_published_checkpoints_run_with_the_catalog(ycb_models, monkeypatch, tmp_path):
    monkeypatch.setenv("YCB_VIDEO_MODELS", str(ycb_models))
    torch.manual_seed(0)
    estimator, refiner = tmp_path / "pose_model_26_0.0128.pth", tmp_path / "pose_refine_model_69_0.0094.pth"
    torch.save(to_published_state_dict(build_estimator(num_objects=21, backbone="psp_resnet18").eval()), estimator)
    torch.save(to_published_state_dict(build_refiner(num_objects=21).eval()), refiner)
    pipe = Pipeline.from_checkpoints(estimator, CATALOG, PipelineConfig(icp="none", seed=0), refiner=refiner)
    assert pipe.num_points == 1000  # the published YCB setting, from the checkpoint's layout
    h, w = 120, 160
    depth = np.full((h, w), 0.8, np.float32)
    mask = np.zeros((h, w), bool)
    mask[40:90, 50:110] = True
    depth[mask] = 0.6
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    K = np.array([[300.0, 0, w / 2], [0, 300.0, h / 2], [0, 0, 1]])
    mug = pipe.catalog.by_name("025_mug")
    result = pipe(Frame(rgb=rgb, depth_m=depth, K=K, masks={mug.class_id: mask}))
    assert result.ok, result.error
    (inst,) = result.instances
    assert inst.name == "025_mug" and inst.index == 13
    assert np.isfinite(inst.R).all() and abs(np.linalg.det(inst.R) - 1) < 1e-4 and np.isfinite(inst.t).all()
