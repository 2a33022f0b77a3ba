"""Checkpoint loading/saving tests (CPU, random weights, temporary files, no downloads)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from densefusion_ros.models import (
    IMAGENET_NORMALIZATION,
    PUBLISHED_NORMALIZATION,
    CheckpointError,
    CheckpointMeta,
    build_estimator,
    build_refiner,
    build_segmenter,
    load_estimator,
    load_refiner,
    load_segmenter,
    metadata_of,
    read_metadata,
    remap_state_dict,
    save_checkpoint,
    to_published_state_dict,
)


@pytest.fixture(scope="module")
def published_estimator():
    torch.manual_seed(0)
    return build_estimator(num_objects=21, backbone="psp_resnet18").eval()


@pytest.fixture(scope="module")
def published_file(tmp_path_factory, published_estimator):
    """A published-style ``pose_model_*.pth``: plain OrderedDict with ``cnn.model.module.*`` keys."""
    path = tmp_path_factory.mktemp("ckpt") / "pose_model_26_0.0128.pth"
    torch.save(to_published_state_dict(published_estimator), path)
    return path


@pytest.fixture(scope="module")
def refiner_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "pose_refine_model_493_0.0067.pth"
    model = build_refiner(num_objects=13)
    torch.save(model.state_dict(), path)
    return path, model.eval()


def _inputs(b=2, h=40, w=48, n=50):
    g = torch.Generator().manual_seed(3)
    img = torch.randn(b, 3, h, w, generator=g)
    points = torch.randn(b, n, 3, generator=g) * 0.1
    choose = torch.randint(0, h * w, (b, n), generator=g)
    return img, points, choose, torch.tensor([20, 3][:b])


def _assert_same_outputs(a, b, inputs):
    with torch.no_grad():
        for x, y in zip(a(*inputs), b(*inputs)):
            assert torch.equal(x, y)


# ------------------------------------------------------------------------------------------------
# published raw state_dicts


def test_published_estimator_loads_and_matches(published_file, published_estimator):
    model = load_estimator(published_file)
    assert not model.training and model.num_objects == 21 and model.backbone_name == "psp_resnet18"
    _assert_same_outputs(model, published_estimator, _inputs())
    meta = model.metadata
    assert meta.format == "published" and meta.kind == "estimator"
    assert meta.normalization == PUBLISHED_NORMALIZATION  # 0-255 RGB, not divided by 255
    assert meta.num_points == 1000 and meta.object_names[0] == "002_master_chef_can"
    assert "object_names" in meta.guessed


def test_published_estimator_with_wrapper_prefix(tmp_path, published_estimator):
    sd = OrderedDict(("module." + k, v) for k, v in to_published_state_dict(published_estimator).items())
    path = tmp_path / "wrapped.pth"
    torch.save(sd, path)
    model = load_estimator(path, num_objects=21)
    _assert_same_outputs(model, published_estimator, _inputs(b=1))


def test_remap_state_dict_is_the_published_rename():
    t = torch.zeros(1)
    out = remap_state_dict(
        {"module.cnn.model.module.feats.conv1.weight": t, "_orig_mod.module.feat.conv1.weight": t, "conv4_c.bias": t}
    )
    assert list(out) == ["cnn.feats.conv1.weight", "feat.conv1.weight", "conv4_c.bias"]
    with pytest.raises(CheckpointError, match="two keys"):
        remap_state_dict({"module.feat.conv1.weight": t, "feat.conv1.weight": t})


def test_published_refiner_infers_num_objects(refiner_file):
    path, source = refiner_file
    model = load_refiner(path)
    assert model.num_objects == 13 and not model.training
    points, emb, obj = torch.randn(3, 30, 3), torch.randn(3, 32, 30), torch.tensor([12, 0, 5])
    _assert_same_outputs(model, source, (points, emb, obj))
    assert model.metadata.object_names[7] == "eggbox" and model.metadata.num_points == 500


def test_own_format_round_trip(tmp_path, published_file, published_estimator):
    loaded = load_estimator(published_file)
    path = save_checkpoint(
        tmp_path / "own.pth",
        loaded,
        kind="estimator",
        training={"command": "densefusion-ros train --data ycb", "epochs": 3},
        metrics={"add_s_auc": 0.91},
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "densefusion_ros" and raw["version"] == 1 and raw["kind"] == "estimator"
    meta = read_metadata(path)
    assert meta.backbone == "psp_resnet18" and meta.num_objects == 21 and meta.num_points == 1000
    assert meta.normalization == PUBLISHED_NORMALIZATION
    assert meta.training["epochs"] == 3 and meta.metrics == {"add_s_auc": 0.91}
    assert meta.object_names == loaded.metadata.object_names
    again = load_estimator(path)
    _assert_same_outputs(again, published_estimator, _inputs())
    assert again.metadata.training["command"].startswith("densefusion-ros")


def test_compact_estimator_round_trip(tmp_path):
    model = build_estimator(num_objects=3, backbone="compact").eval()
    path = save_checkpoint(
        tmp_path / "compact.pth", model, num_points=200, object_names=["a", "b", "c"], normalization=IMAGENET_NORMALIZATION
    )
    loaded = load_estimator(path, num_objects=3)
    assert loaded.backbone_name == "compact" and loaded.metadata.normalization["scale"] == pytest.approx(1 / 255)
    img, points, choose, _ = _inputs(b=2)
    _assert_same_outputs(loaded, model, (img, points, choose, torch.tensor([2, 0])))
    assert read_metadata(path).object_names == ("a", "b", "c")


def test_segmenters_round_trip(tmp_path):
    seg = build_segmenter(num_classes=4, arch="compact").eval()
    path = save_checkpoint(tmp_path / "seg.pth", seg, normalization=PUBLISHED_NORMALIZATION, object_names=["a", "b", "c"])
    loaded = load_segmenter(path)
    x = torch.randn(1, 3, 40, 50)
    with torch.no_grad():
        assert torch.equal(loaded(x), seg(x))
    assert loaded.metadata.num_classes == 4 and loaded.metadata.arch == "compact"
    assert loaded.metadata.input_scale == 1.0
    # the scale a segmenter was trained at survives re-saving
    again = save_checkpoint(tmp_path / "seg2.pth", loaded, input_scale=0.5)
    assert load_segmenter(save_checkpoint(tmp_path / "seg3.pth", load_segmenter(again))).metadata.input_scale == 0.5


def test_metadata_dict_form_round_trip_keeps_unknown_keys(tmp_path):
    """A file written as a plain dict (the form of every file so far, plus a key this code does not
    know) loads into the typed form, re-saves with the unknown key, and stays a plain dict on disk."""
    model = build_refiner(num_objects=2).eval()
    old = {
        "format": "densefusion_ros", "version": 1, "kind": "refiner", "arch": "refiner", "backbone": None,
        "num_objects": 2, "num_classes": None, "num_points": 300, "object_names": ["a", "b"],
        "normalization": dict(IMAGENET_NORMALIZATION), "training": {"epochs": 4}, "metrics": {"test_dis": 0.01},
        "future_field": {"x": 1}, "state_dict": model.state_dict(),
    }  # fmt: skip
    torch.save(old, tmp_path / "old.pth")
    loaded = load_refiner(tmp_path / "old.pth")
    meta = metadata_of(loaded)
    assert isinstance(meta, CheckpointMeta) and meta.kind == "refiner" and meta.num_points == 300
    assert meta.object_names == ("a", "b") and meta.training == {"epochs": 4} and meta.extra == {"future_field": {"x": 1}}
    raw = torch.load(save_checkpoint(tmp_path / "new.pth", loaded), map_location="cpu", weights_only=True)
    assert raw["future_field"] == {"x": 1} and raw["object_names"] == ["a", "b"] and raw["num_points"] == 300
    assert {k: v for k, v in raw.items() if k != "state_dict"} == {k: v for k, v in old.items() if k != "state_dict"}
    # the dict form and back
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    assert meta.to_dict()["object_names"] == ["a", "b"] and meta.to_dict()["future_field"] == {"x": 1}


def test_metadata_of_models_without_a_checkpoint():
    assert metadata_of(build_estimator(num_objects=2, backbone="compact")) == CheckpointMeta()
    assert metadata_of(None) == CheckpointMeta()
    seg = build_segmenter(num_classes=3, arch="compact")
    seg.metadata = {"input_scale": 0.5}  # set by hand, as a dict
    assert metadata_of(seg).input_scale == 0.5 and metadata_of(seg).normalization is None


@pytest.mark.parametrize("kind", ["estimator", "refiner", "segmenter"])
def test_bundled_weights_load_with_typed_metadata(kind):
    """The bundled files (written before the typed form) load unchanged."""
    from densefusion_ros.resources import share_path

    path = share_path("models", f"{kind}.pth")
    meta = read_metadata(path)
    assert meta.format == "densefusion_ros" and meta.kind == kind and meta.object_names == ("duck", "mug", "bunny", "torus")
    loader = {"estimator": load_estimator, "refiner": load_refiner, "segmenter": load_segmenter}[kind]
    model = loader(path)
    assert metadata_of(model).normalization == meta.normalization and metadata_of(model).training == meta.training


def test_vanilla_segnet_state_dict_without_bn_counters(tmp_path):
    """A torch-0.4-era ``vanilla_segmentation`` file: bare keys, no ``num_batches_tracked``."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_segmenter(num_classes=22, arch="segnet").state_dict().items()}
    sd = OrderedDict(
        (k, torch.full(shape, 0.001 * i))
        for i, (k, shape) in enumerate(shapes.items())
        if not k.endswith("num_batches_tracked")
    )
    path = tmp_path / "model_12_0.03.pth"
    torch.save(sd, path)
    meta = read_metadata(path)
    assert meta.kind == "segmenter" and meta.arch == "segnet" and meta.num_classes == 22
    assert "SegNet" in meta.description
    loaded = load_segmenter(path, num_classes=22)
    assert torch.equal(loaded.conv11d.weight, sd["conv11d.weight"])
    assert torch.equal(loaded.bn53d.running_var, sd["bn53d.running_var"])
    assert int(loaded.bn11.num_batches_tracked) == 0
    with torch.no_grad():
        assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, 22, 32, 32)


# ------------------------------------------------------------------------------------------------
# mismatches


def test_refiner_file_given_to_load_estimator(refiner_file):
    path, _ = refiner_file
    with pytest.raises(CheckpointError) as info:
        load_estimator(path)
    msg = str(info.value)
    assert str(path) in msg and "refiner" in msg and "13 objects" in msg
    assert "missing keys" in msg and "cnn.feats.conv1.weight" in msg and "feat.conv5.weight" in msg


def test_estimator_file_given_to_load_refiner(tmp_path):
    path = save_checkpoint(
        tmp_path / "est.pth", build_estimator(num_objects=2, backbone="compact"), normalization=IMAGENET_NORMALIZATION
    )
    with pytest.raises(CheckpointError, match="estimator"):
        load_refiner(path)
    with pytest.raises(CheckpointError, match="estimator"):
        load_segmenter(path)


def test_wrong_num_objects(published_file, refiner_file):
    with pytest.raises(CheckpointError, match=r"21 objects.*num_objects=13"):
        load_estimator(published_file, num_objects=13)
    with pytest.raises(CheckpointError, match=r"13 objects.*num_objects=21"):
        load_refiner(refiner_file[0], num_objects=21)


def test_truncated_and_misshaped_keys_are_named(tmp_path, refiner_file):
    _, source = refiner_file
    sd = OrderedDict(source.state_dict())
    del sd["conv2_t.weight"], sd["conv2_t.bias"]
    sd["feat.conv6.bias"] = torch.zeros(7)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_refiner(path)
    msg = str(info.value)
    assert "2 missing keys: conv2_t.weight, conv2_t.bias" in msg
    assert "1 unexpected keys: extra.weight" in msg
    assert "feat.conv6.bias (file [7] vs model [1024])" in msg
    assert "refiner" in msg


def test_unreadable_and_unknown_files(tmp_path):
    pickled = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module: refused by weights_only
    with pytest.raises(CheckpointError, match="weights_only"):
        load_estimator(pickled)
    unknown = tmp_path / "unknown.pth"
    torch.save({"foo.weight": torch.zeros(2)}, unknown)
    with pytest.raises(CheckpointError, match="unknown layout"):
        load_refiner(unknown)
    with pytest.raises(FileNotFoundError):
        load_estimator(tmp_path / "missing.pth")


def test_save_checkpoint_validation(tmp_path):
    model = build_refiner(num_objects=2)
    with pytest.raises(ValueError, match="normalization"):
        save_checkpoint(tmp_path / "a.pth", model)
    with pytest.raises(ValueError, match="object_names"):
        save_checkpoint(tmp_path / "a.pth", model, normalization=IMAGENET_NORMALIZATION, object_names=["x"])
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "a.pth", model, kind="estimator", normalization=IMAGENET_NORMALIZATION)
    assert not list(tmp_path.iterdir())


def test_half_storage_round_trip(tmp_path):
    import torch

    from densefusion_ros.models import build_refiner, load_refiner, save_checkpoint
    from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION

    torch.manual_seed(0)
    ref = build_refiner(num_objects=2).eval()
    full = save_checkpoint(tmp_path / "full.pth", ref, kind="refiner", normalization=IMAGENET_NORMALIZATION)
    half = save_checkpoint(tmp_path / "half.pth", ref, kind="refiner", normalization=IMAGENET_NORMALIZATION, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_refiner(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    points, emb, obj = torch.randn(3, 50, 3), torch.randn(3, 32, 50), torch.tensor([0, 1, 0])
    with torch.no_grad():
        for a, b in zip(ref(points, emb, obj), loaded(points, emb, obj)):
            assert torch.allclose(a, b, atol=1e-2, rtol=1e-2)


def test_garbage_tensor_mappings_raise_checkpoint_error(tmp_path):
    import pytest
    import torch

    from densefusion_ros.models import CheckpointError, load_estimator, read_metadata

    for i, payload in enumerate([{"conv4_c.weight": torch.zeros(3)}, {"x": torch.zeros(1)}, {}]):
        path = tmp_path / f"g{i}.pth"
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match=str(path.name)):
            load_estimator(path)
        try:
            read_metadata(path)
        except CheckpointError:
            pass
