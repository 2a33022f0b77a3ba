"""Training samples: PoseDataset, SegmentationDataset, augmentation, size-grouped batching."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from densefusion_ros.catalog import Catalog
from densefusion_ros.data.bop import BopDataset
from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION
from densefusion_ros.sampling import prepare_instance
from densefusion_ros.train.dataset import (
    Augment,
    PoseDataset,
    SegmentationDataset,
    SizeGroupedBatchSampler,
    collate_pose,
    color_jitter,
    mask_noise,
    random_occluder,
)


@pytest.fixture(scope="module")
def toy(toy_dataset):
    return toy_dataset, Catalog.load(toy_dataset / "catalog.yaml")


def _dataset(toy, **kw):
    root, cat = toy
    kw.setdefault("normalization", IMAGENET_NORMALIZATION)
    kw.setdefault("num_points", 100)
    kw.setdefault("num_model_points", 200)
    return PoseDataset(BopDataset(root, "train", load_masks=False), cat, **kw)


def test_samples_match_prepare_instance_and_ground_truth(toy):
    root, cat = toy
    ds = _dataset(toy, augment=Augment.none())
    bop = BopDataset(root, "train")
    for i in (0, len(ds) - 1):
        s = ds[(i, 0)]
        ref = ds.refs[i]
        frame = bop.load_frame(*bop.index[ref.frame])
        gt = frame.gt[ref.gt_idx]
        # the same crop and points as the shared rule with the same generator
        rng = np.random.default_rng([ds.seed, 0, i])
        inst = prepare_instance(frame.rgb, frame.depth_m, frame.K, gt.mask, num_points=100, rng=rng, min_points=ds.min_points)
        assert tuple(s["img"].shape) == (3, *inst.rgb.shape[:2]) == (3, *ref.crop_hw)
        np.testing.assert_array_equal(s["choose"].numpy(), inst.choose)
        np.testing.assert_allclose(s["points"].numpy(), inst.points, atol=1e-6)
        # target = model points under the GT pose; the observed points lie on it
        np.testing.assert_allclose(s["target"].numpy(), s["model_points"].numpy() @ gt.R.T + gt.t, atol=1e-5)
        d, _ = cKDTree(s["target"].numpy()).query(s["points"].numpy())
        assert d.mean() < 0.01
        assert s["obj"] == cat.by_class_id(gt.class_id).index
        assert s["symmetric"] == cat.by_class_id(gt.class_id).symmetric


def test_crop_cache_gives_identical_samples(toy):
    plain = _dataset(toy, cache_crops=False)
    cached = _dataset(toy, cache_crops=True)
    for epoch in (0, 1):  # epoch 1 reads the cache
        for i in range(len(plain)):
            a, b = plain[(i, epoch)], cached[(i, epoch)]
            for k in ("img", "points", "choose", "target", "model_points"):
                assert torch.equal(a[k], b[k]), (i, epoch, k)


def test_preloaded_crops_give_identical_samples(toy, monkeypatch):
    plain = _dataset(toy, cache_crops=False)
    preloaded = _dataset(toy, cache_crops=True)
    preloaded.preload(threads=3)
    assert sorted(preloaded._cache) == list(range(len(preloaded)))
    # after preloading, sampling reads no file
    monkeypatch.setattr(preloaded, "_read_region", lambda i: pytest.fail(f"instance {i} read from disk"))
    for i in range(len(plain)):
        a, b = plain[(i, 0)], preloaded[(i, 0)]
        for k in ("img", "points", "choose", "target", "model_points"):
            assert torch.equal(a[k], b[k]), (i, k)
    with pytest.raises(ValueError, match="cache_crops"):
        plain.preload()


def test_augmentation_is_seeded_and_adds_the_same_shift(toy):
    ds = _dataset(toy, augment=Augment(occluder_prob=1.0, mask_noise_prob=1.0))
    a, b, c = ds[(0, 3)], ds[(0, 3)], ds[(0, 4)]
    assert torch.equal(a["img"], b["img"]) and torch.equal(a["points"], b["points"])
    assert not torch.equal(a["points"], c["points"])
    plain = _dataset(toy, augment=Augment(0, 0, 0, 0, noise_trans=0.03))
    s, clean = plain[(0, 0)], _dataset(toy, augment=Augment.none())[(0, 0)]
    d_t, d_p = s["target"] - clean["target"], s["points"] - clean["points"]
    # one shift for the whole sample, the same for the cloud and the target, within +-3 cm
    assert torch.allclose(d_t, d_t[:1].expand_as(d_t), atol=1e-6) and torch.allclose(d_p, d_t[:1].expand_as(d_p), atol=1e-6)
    assert 0 < d_t[0].abs().max() <= 0.03


def test_color_jitter_and_masks():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(color_jitter(img, rng, 0, 0, 0, 0), img)
    out = color_jitter(img, rng)
    assert out.dtype == np.uint8 and out.shape == img.shape and not np.array_equal(out, img)
    mask = np.zeros((60, 60), bool)
    mask[20:40, 15:45] = True
    for _ in range(5):
        m = mask_noise(mask, rng, 3)
        assert m.any() and m.shape == mask.shape
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb2, m2 = random_occluder(rgb, mask, np.random.default_rng(1))
    assert m2.sum() < mask.sum() and (m2 <= mask).all() and m2.sum() >= 0.5 * mask.sum()
    assert (rgb2[mask & ~m2] != 0).any()


def test_size_grouped_batches_and_collate(toy):
    ds = _dataset(toy)
    sizes = ds.crop_sizes
    s = SizeGroupedBatchSampler(sizes, 3, seed=0)
    batches = list(s)
    assert len(batches) == len(s)
    assert sorted(i for b in batches for i, _ in b) == list(range(len(ds)))
    full = [b for b in batches if len({sizes[i] for i, _ in b}) == 1]
    assert len(full) >= len(batches) - len(set(sizes))  # only the leftovers mix sizes
    # DDP shards: the same number of batches on every rank, disjoint before padding
    shards = [list(SizeGroupedBatchSampler(sizes, 2, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    groups = collate_pose([ds[k] for k in batches[-1]])
    assert sum(g["img"].shape[0] for g in groups) == len(batches[-1])
    for g in groups:
        assert g["points"].shape[1:] == (100, 3) and g["choose"].dtype == torch.int64 and g["symmetric"].dtype == torch.bool
    # more samples per epoch than instances: each index appears about equally often
    many = SizeGroupedBatchSampler(sizes, 4, samples_per_epoch=3 * len(ds), seed=1)
    counts = Counter(i for b in many for i, _ in b)
    assert set(counts.values()) == {3}


def test_segmentation_labels(toy):
    root, cat = toy
    ds = SegmentationDataset(BopDataset(root, "train", load_masks=False), cat, normalization=IMAGENET_NORMALIZATION, scale=0.5)
    img, label = ds[(0, 0)]
    assert img.shape == (3, 120, 160) and label.shape == (120, 160) and label.dtype == torch.int64
    assert set(label.unique().tolist()) <= {0} | {o.index + 1 for o in cat}
    assert (label > 0).any()
    img2, label2 = ds[(0, 0)]
    assert torch.equal(img, img2) and torch.equal(label, label2)
