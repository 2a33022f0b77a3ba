"""Network layout and forward tests for densefusion_ros.models (CPU, small random inputs)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densefusion_ros.models import (
    IMAGENET_NORMALIZATION,
    PUBLISHED_NORMALIZATION,
    CompactColorNet,
    DenseFusionEstimator,
    DenseFusionRefiner,
    PSPNet,
    SegNet,
    build_color_backbone,
    build_estimator,
    build_refiner,
    build_segmenter,
    fuse_batchnorm,
    normalize_image,
    to_published_state_dict,
)
from densefusion_ros.models.fusion import ROW_BLOCK

KEYS_DIR = Path(__file__).parent / "data" / "official_keys"


def _official(name: str) -> list[tuple[str, list[int], str]]:
    rows = []
    for line in (KEYS_DIR / name).read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, [int(s) for s in shape.strip("[]").split(",") if s.strip()], dtype))
    return rows


def _rows(sd: dict[str, torch.Tensor]) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]


def _meta(fn, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return fn(*args, **kwargs)


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def estimators() -> dict[str, DenseFusionEstimator]:
    """One small-K estimator per backbone, shared by the tests of this module (eval mode)."""
    torch.manual_seed(1)
    return {bb: build_estimator(num_objects=5, backbone=bb).eval() for bb in ("compact", "psp_resnet18")}


# ------------------------------------------------------------------------------------------------
# published layouts: keys, shapes, dtypes (in order) and parameter counts


@pytest.mark.parametrize(
    ("num_objects", "keys_file"),
    [(21, "keys_posenet_ycb_np1000_nobj21.txt"), (13, "keys_posenet_linemod_np500_nobj13.txt")],
)
def test_estimator_published_keys(num_objects, keys_file):
    model = _meta(build_estimator, num_objects=num_objects, backbone="psp_resnet18")
    assert _rows(to_published_state_dict(model)) == _official(keys_file)


@pytest.mark.parametrize(
    ("num_objects", "keys_file"),
    [(21, "keys_refiner_ycb_np1000_nobj21.txt"), (13, "keys_refiner_linemod_np500_nobj13.txt")],
)
def test_refiner_published_keys(num_objects, keys_file):
    model = _meta(build_refiner, num_objects=num_objects)
    assert _rows(model.state_dict()) == _official(keys_file)


def test_segnet_published_keys():
    model = _meta(build_segmenter, num_classes=22, arch="segnet")
    assert _rows(model.state_dict()) == _official("keys_segnet_ycb_label22.txt")


def test_parameter_counts_match_fact_sheet():
    assert _nparams(_meta(build_estimator, num_objects=21)) == 21_449_056
    assert _nparams(_meta(build_estimator, num_objects=13)) == 21_440_800
    psp = _meta(PSPNet)
    assert _nparams(psp) == 17_455_224
    assert _nparams(psp.classifier) == 71_189
    assert _nparams(_meta(build_estimator, num_objects=21).feat) == 675_904
    assert _nparams(_meta(build_refiner, num_objects=21)) == 1_941_331
    assert _nparams(_meta(build_refiner, num_objects=13)) == 1_934_107
    assert _nparams(_meta(SegNet, 3, 22)) == 29_455_702


def test_compact_models_are_small():
    assert 300_000 <= _nparams(_meta(CompactColorNet)) <= 1_500_000
    assert 500_000 <= _nparams(_meta(build_segmenter, num_classes=22, arch="compact")) <= 2_000_000


# ------------------------------------------------------------------------------------------------
# published color net details (fact sheet 1.1 pitfalls)


def test_psp_layout_details():
    net = _meta(PSPNet)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    f = net.feats
    assert all(m.bias is None for m in f.modules() if isinstance(m, nn.Conv2d))
    assert f.layer3[0].conv1.dilation == (1, 1) and f.layer3[0].conv1.stride == (1, 1)
    assert f.layer3[1].conv1.dilation == (2, 2) and f.layer3[1].conv2.padding == (2, 2)
    assert f.layer4[0].conv1.dilation == (1, 1) and f.layer4[0].conv1.stride == (1, 1)
    assert f.layer4[1].conv1.dilation == (4, 4) and f.layer4[1].conv2.padding == (4, 4)
    assert f.layer2[0].conv1.stride == (2, 2)
    assert [s[0].output_size for s in net.psp.stages] == [1, 2, 3, 6]
    assert net.drop_1.p == 0.3 and net.drop_2.p == 0.15
    assert net.up_1.conv[0].align_corners is True
    assert isinstance(net.final[1], nn.LogSoftmax) and net.final[1].dim == 1


def test_psp_reference_forward(estimators):
    """PSP module and decoder recomputed from the fact sheet with functional ops."""
    net = estimators["psp_resnet18"].cnn
    assert isinstance(net, PSPNet)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        feats, _ = net.feats(x)
        h, w = feats.shape[-2:]
        pri = [
            F.interpolate(F.conv2d(F.adaptive_avg_pool2d(feats, s), net.psp.stages[i][1].weight), (h, w), mode="bilinear")
            for i, s in enumerate((1, 2, 3, 6))
        ]
        p = F.relu(F.conv2d(torch.cat([*pri, feats], 1), net.psp.bottleneck.weight, net.psp.bottleneck.bias))
        for up in (net.up_1, net.up_2, net.up_3):
            p = F.interpolate(p, scale_factor=2, mode="bilinear", align_corners=True)
            p = F.prelu(F.conv2d(p, up.conv[1].weight, up.conv[1].bias, padding=1), up.conv[2].weight)
        ref = F.log_softmax(F.conv2d(p, net.final[0].weight, net.final[0].bias), dim=1)
        out = net(x)
    assert out.shape == (1, 32, 32, 48)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["compact", "psp_resnet18"])
def test_color_backbones_log_softmax(name, estimators):
    net = estimators[name].cnn
    with torch.no_grad():
        out = net(torch.randn(2, 3, 40, 56))
    assert out.shape == (2, 32, 40, 56)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(2, 40, 56), rtol=0, atol=1e-5)


def test_unknown_backbone_raises():
    with pytest.raises(ValueError, match="compact"):
        build_color_backbone("resnet50")


# ------------------------------------------------------------------------------------------------
# estimator


def _estimator_inputs(b=3, h=40, w=48, n=64, num_objects=5):
    img = torch.randn(b, 3, h, w)
    points = torch.randn(b, n, 3) * 0.1 + torch.tensor([0.0, 0.0, 0.8])
    choose = torch.stack([torch.randperm(h * w)[:n].sort().values for _ in range(b)])
    obj = torch.tensor([4, 0, 2][:b])
    return img, points, choose, obj


@pytest.fixture(scope="module", params=["compact", "psp_resnet18"])
def estimator_run(request, estimators):
    """``(model, (img, points, choose, obj), forward output)`` for each backbone, B=3, N=64."""
    model = estimators[request.param]
    torch.manual_seed(2)
    inputs = _estimator_inputs()
    with torch.no_grad():
        return model, inputs, model(*inputs)


def test_estimator_shapes_and_ranges(estimator_run):
    _, _, (quat, trans, conf, emb) = estimator_run
    assert quat.shape == (3, 64, 4) and trans.shape == (3, 64, 3) and conf.shape == (3, 64, 1)
    assert emb.shape == (3, 32, 64) and not emb.requires_grad
    assert bool(((conf > 0) & (conf < 1)).all())
    torch.testing.assert_close(emb.exp().sum(1), torch.ones(3, 64), rtol=0, atol=1e-5)


def test_estimator_batched_equals_per_sample(estimator_run):
    model, (img, points, choose, obj), batched = estimator_run
    with torch.no_grad():
        for b in range(3):
            single = model(img[b : b + 1], points[b : b + 1], choose[b : b + 1], obj[b : b + 1])
            for got, want in zip(batched, single):
                torch.testing.assert_close(got[b : b + 1], want, rtol=1e-5, atol=1e-5)


def test_forward_best_equals_forward_and_argmax(estimator_run):
    model, (img, points, choose, obj), (quat, trans, conf, _) = estimator_run
    with torch.no_grad():
        best = model.forward_best(points, model.embed(img, choose), obj)
    index = conf[..., 0].argmax(dim=1)
    rows = torch.arange(3)
    assert torch.equal(best.index, index)
    assert torch.equal(best.conf, conf[rows, index, 0])
    torch.testing.assert_close(best.quat, quat[rows, index], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(best.t, points[rows, index] + trans[rows, index], rtol=1e-5, atol=1e-6)
    assert best.quat.shape == (3, 4) and best.t.shape == (3, 3) and best.conf.shape == (3,)


def test_forward_best_point_rows_equal_channels_first(estimator_run):
    """``rows=True`` (one GEMM per layer over all B*N points) gives the channels-first result."""
    model, (img, points, choose, obj), _ = estimator_run
    with torch.no_grad():
        _assert_best_rows_equal(model, points, model.embed(img, choose), obj)


def _assert_best_rows_equal(model, points, emb, obj) -> None:
    want = model.forward_best(points, emb, obj)
    got = model.forward_best(points, emb, obj, rows=True)
    assert torch.equal(got.index, want.index)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.float(), w.float(), rtol=1e-5, atol=1e-6)


def test_point_rows_in_several_blocks_equal_channels_first(estimators):
    """N = 600 points: the rows path's cache blocks (``ROW_BLOCK`` = 256 rows, never across two
    samples) give the channels-first estimator head and refiner, also with the refiner's
    colour branch computed once (``colour=``)."""
    assert ROW_BLOCK < 600 < 3 * ROW_BLOCK
    model, refiner = estimators["compact"], build_refiner(num_objects=5).eval()
    torch.manual_seed(3)
    img, points, choose, obj = _estimator_inputs(h=40, w=48, n=600)
    with torch.no_grad():
        emb = model.embed(img, choose)
        _assert_best_rows_equal(model, points, emb, obj)
        local = (points - points.mean(dim=1, keepdim=True)) * 0.5
        want = refiner(local, emb, obj)
        colour = refiner.colour_term(emb)
        assert colour.shape == (3 * 600, 512)
        for rows in (refiner(local, emb, obj, rows=True), refiner(local, emb, obj, rows=True, colour=colour)):
            for g, w in zip(rows, want):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="rows"):
            refiner(local, emb, obj, colour=colour)


def test_fuse_batchnorm_keeps_outputs_and_leaves_the_original():
    """Folding eval BatchNorm into the convs: same embedding and segmenter logits; the original
    keeps its BatchNorm (still trainable); a network without BatchNorm comes back as it is."""
    torch.manual_seed(4)
    est, seg = build_estimator(num_objects=5, backbone="compact").eval(), build_segmenter(num_classes=6).eval()
    for m in [*est.modules(), *seg.modules()]:
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, as after training
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    img, points, choose, obj = _estimator_inputs()
    fused_est, fused_seg = fuse_batchnorm(est), fuse_batchnorm(seg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*fused_est.modules(), *fused_seg.modules()])
    assert any(isinstance(m, nn.BatchNorm2d) for m in est.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused_est.embed(img, choose), est.embed(img, choose), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fused_seg(img), seg(img), rtol=1e-4, atol=1e-4)
    published = build_estimator(num_objects=5, backbone="psp_resnet18")
    assert fuse_batchnorm(published) is published


def test_estimator_accepts_published_call_styles(estimators):
    model = estimators["compact"]
    img, points, choose, obj = _estimator_inputs(b=1)
    with torch.no_grad():
        a = model(img, points, choose, obj)  # choose [1,N], obj [1]
        b = model(img, points, choose[:, None, :], obj[:, None])  # choose [1,1,N], obj [1,1]
        c = model(img, points, choose, obj[0])  # obj 0-d
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)


@pytest.mark.parametrize("size", [(40, 48), (37, 51)])
def test_estimator_embedding_gathers_chosen_pixels(estimators, size):
    """The compact backbone's ``forward_at`` (upsampling and LogSoftmax at the chosen pixels only)
    equals the full-size map gathered at those pixels, for even and odd crop sizes."""
    model = estimators["compact"]
    h, w = size
    img = torch.randn(2, 3, h, w)
    choose = torch.stack([torch.randperm(h * w)[:64].sort().values for _ in range(2)])
    choose[0, :4] = torch.tensor([0, w - 1, (h - 1) * w, h * w - 1])  # the corners
    with torch.no_grad():
        full = model.cnn(img)
        emb = model.embed(img, choose)
    want = full.reshape(2, 32, h * w).gather(2, choose.unsqueeze(1).expand(-1, 32, -1))
    torch.testing.assert_close(emb, want, rtol=1e-5, atol=1e-5)
    for bad in (-1, h * w):
        choose[1, -1] = bad
        with pytest.raises(IndexError, match="choose"):
            model.embed(img, choose)


def _reference_posenet(model: DenseFusionEstimator, img, points, choose, obj_idx: int):
    """Published PoseNet forward for a batch of one (fact sheet 1.2), written with functional ops."""
    sd = model.state_dict()

    def conv(name, x):
        return F.conv1d(x, sd[name + ".weight"], sd[name + ".bias"])

    n = points.shape[1]
    out_img = model.cnn(img)
    emb = torch.gather(out_img.view(1, 32, -1), 2, choose.view(1, 1, n).repeat(1, 32, 1))
    x = points.transpose(2, 1)
    x1, e1 = F.relu(conv("feat.conv1", x)), F.relu(conv("feat.e_conv1", emb))
    pf1 = torch.cat([x1, e1], 1)
    x2, e2 = F.relu(conv("feat.conv2", x1)), F.relu(conv("feat.e_conv2", e1))
    pf2 = torch.cat([x2, e2], 1)
    g = F.relu(conv("feat.conv6", F.relu(conv("feat.conv5", pf2))))
    g = nn.AvgPool1d(n)(g).view(-1, 1024, 1).repeat(1, 1, n)
    feat = torch.cat([pf1, pf2, g], 1)
    heads = {}
    for h, k in (("r", 4), ("t", 3), ("c", 1)):
        y = feat
        for i in (1, 2, 3):
            y = F.relu(conv(f"conv{i}_{h}", y))
        # object j's rows of the last layer: weight[k*j : k*j+k]
        w = sd[f"conv4_{h}.weight"][k * obj_idx : k * obj_idx + k]
        bias = sd[f"conv4_{h}.bias"][k * obj_idx : k * obj_idx + k]
        heads[h] = F.conv1d(y, w, bias).transpose(2, 1)
    return heads["r"], heads["t"], torch.sigmoid(heads["c"]), emb


def test_estimator_matches_reference_fusion_head(estimators):
    model = estimators["psp_resnet18"]
    img, points, choose, obj = _estimator_inputs()
    with torch.no_grad():
        out = model(img, points, choose, obj)
        for b in range(3):
            ref = _reference_posenet(model, img[b : b + 1], points[b : b + 1], choose[b : b + 1], int(obj[b]))
            for got, want in zip(out, ref):
                torch.testing.assert_close(got[b : b + 1], want, rtol=1e-5, atol=1e-5)


def test_pixelwise_fusion_layout():
    model = build_estimator(num_objects=2, backbone="compact").feat
    points, emb = torch.randn(2, 3, 9), torch.randn(2, 32, 9)
    with torch.no_grad():
        full = model(points, emb)
        local, glob = model.forward_split(points, emb)
        geo64 = F.relu(model.conv1(points))
    assert full.shape == (2, 1408, 9)
    torch.testing.assert_close(full[:, :64], geo64)  # geometry first
    torch.testing.assert_close(full[:, :384], local)
    torch.testing.assert_close(full[:, 384:], glob[:, :, None].expand(-1, -1, 9))


def test_published_key_rename_is_one_to_one():
    from densefusion_ros.models import remap_state_dict

    model = _meta(build_estimator, num_objects=3)
    published = to_published_state_dict(model)
    assert sum(k.startswith("cnn.model.module.") for k in published) == 41
    assert list(remap_state_dict(published)) == list(model.state_dict())


def test_estimator_any_number_of_points(estimators):
    model = estimators["compact"]
    img, points, choose, obj = _estimator_inputs(b=1, n=7)
    with torch.no_grad():
        quat, *_ = model(img, points, choose, obj)
    assert quat.shape == (1, 7, 4)


def test_estimator_input_errors(estimators):
    model = estimators["psp_resnet18"]
    img, points, choose, obj = _estimator_inputs(b=1)
    with torch.no_grad(), pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 44, 44), points, choose % (44 * 44), obj)
    with pytest.raises(IndexError, match="out of range"):
        model(img, points, choose, torch.tensor([5]))
    with pytest.raises(ValueError, match="points"):
        model(img, points[..., :2], choose, obj)
    with pytest.raises(ValueError, match="choose"):
        model(img, points, choose[:, :10], obj)


# ------------------------------------------------------------------------------------------------
# refiner


def _reference_refiner(model: DenseFusionRefiner, points, emb, obj_idx: int):
    sd = model.state_dict()

    def conv(name, x):
        return F.conv1d(x, sd[name + ".weight"], sd[name + ".bias"])

    n = points.shape[1]
    x = points.transpose(2, 1)
    x1, e1 = F.relu(conv("feat.conv1", x)), F.relu(conv("feat.e_conv1", emb))
    x2, e2 = F.relu(conv("feat.conv2", x1)), F.relu(conv("feat.e_conv2", e1))
    pf3 = torch.cat([x1, e1, x2, e2], 1)
    g = nn.AvgPool1d(n)(F.relu(conv("feat.conv6", F.relu(conv("feat.conv5", pf3))))).view(-1, 1024)
    out = []
    for h, k in (("r", 4), ("t", 3)):
        y = F.relu(F.linear(g, sd[f"conv1_{h}.weight"], sd[f"conv1_{h}.bias"]))
        y = F.relu(F.linear(y, sd[f"conv2_{h}.weight"], sd[f"conv2_{h}.bias"]))
        y = F.linear(y, sd[f"conv3_{h}.weight"], sd[f"conv3_{h}.bias"]).view(1, -1, k)
        out.append(torch.index_select(y[0], 0, torch.tensor([obj_idx])))
    return tuple(out)


def test_refiner_batched_equals_reference_and_per_sample():
    model = build_refiner(num_objects=5).eval()
    points = torch.randn(3, 50, 3) * 0.05
    emb = torch.randn(3, 32, 50)
    obj = torch.tensor([[4], [1], [2]])
    with torch.no_grad():
        quat, trans = model(points, emb, obj)
        assert quat.shape == (3, 4) and trans.shape == (3, 3)
        for b in range(3):
            single = model(points[b : b + 1], emb[b : b + 1], obj[b])
            ref = _reference_refiner(model, points[b : b + 1], emb[b : b + 1], int(obj[b]))
            for got, s, r in zip((quat, trans), single, ref):
                torch.testing.assert_close(got[b : b + 1], s, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(got[b : b + 1], r, rtol=1e-5, atol=1e-5)
        for got, want in zip(model(points, emb, obj, rows=True), (quat, trans)):  # point rows: same values
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_refiner_input_errors():
    model = build_refiner(num_objects=2)
    with pytest.raises(ValueError, match="emb"):
        model(torch.randn(1, 10, 3), torch.randn(1, 32, 9), torch.tensor([0]))
    with pytest.raises(IndexError):
        model(torch.randn(1, 10, 3), torch.randn(1, 32, 10), torch.tensor([-1]))


# ------------------------------------------------------------------------------------------------
# segmentation


# (builder, output channels, input sizes): networks that take any H x W
_ANY_SIZE = {
    "compact_color": (CompactColorNet, 32, [(120, 160), (37, 53), (1, 1)]),
    "compact_seg": (partial(build_segmenter, num_classes=4, arch="compact"), 4, [(100, 100), (120, 160), (33, 47)]),
    "segnet": (partial(SegNet, 3, 5), 5, [(64, 96), (50, 70)]),
}


@pytest.mark.parametrize("name", list(_ANY_SIZE))
def test_any_input_size(name):
    build, channels, sizes = _ANY_SIZE[name]
    net = build().eval()
    with torch.no_grad():
        for size in sizes:
            assert net(torch.randn(2, 3, *size)).shape == (2, channels, *size)
    if name == "segnet":
        assert net.conv11d.out_channels == 5 and not hasattr(net, "bn11d")  # raw logits, no BN


def test_build_segmenter_errors():
    with pytest.raises(ValueError, match="arch"):
        build_segmenter(num_classes=3, arch="unet")
    with pytest.raises(ValueError, match="num_classes"):
        build_segmenter(num_classes=1)


# ------------------------------------------------------------------------------------------------
# normalisation


def test_normalize_image_published_and_imagenet():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    pub = normalize_image(rgb, PUBLISHED_NORMALIZATION)
    assert pub.shape == (3, 2, 3) and pub.dtype == torch.float32
    torch.testing.assert_close(pub[0, 0, 0], torch.tensor((255 - 0.485) / 0.229))
    torch.testing.assert_close(pub[1, 0, 0], torch.tensor(-0.456 / 0.224))
    imn = normalize_image(torch.from_numpy(rgb)[None], IMAGENET_NORMALIZATION)
    assert imn.shape == (1, 3, 2, 3)
    torch.testing.assert_close(imn[0, 0, 0, 0], torch.tensor((1.0 - 0.485) / 0.229))
    chw = normalize_image(np.moveaxis(rgb, -1, 0), IMAGENET_NORMALIZATION, channels_last=False)
    torch.testing.assert_close(chw, imn[0])
    with pytest.raises(ValueError):
        normalize_image(rgb, {"scale": 1.0, "mean": [0, 0], "std": [1, 1, 1]})
