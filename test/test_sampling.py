"""The published crop and sampling rule (fact sheet 4.1-4.3) in :mod:`densefusion_ros.sampling`."""

from __future__ import annotations

import numpy as np
import pytest

from densefusion_ros import sampling as s

IMAGE = (480, 640)


def _mask_box(rows: tuple[int, int], cols: tuple[int, int], shape=IMAGE) -> tuple[int, int, int, int]:
    """The YCB dataset box of a mask covering inclusive ``rows`` and ``cols`` (rmax += 1)."""
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return s.mask_box(mask)


@pytest.mark.parametrize(
    "rows, cols, expected",
    [
        ((100, 149), (200, 259), (85, 165, 190, 270)),
        ((0, 30), (0, 30), (0, 40, 0, 40)),
        ((200, 240), (300, 340), (180, 260, 280, 360)),  # 41 px, since rmax + 1
    ],
)
def test_crop_rule_ycb_mask_examples(rows, cols, expected):
    assert s.crop_box(_mask_box(rows, cols), IMAGE).as_tuple() == expected


def test_crop_rule_linemod_example_after_clamp():
    x, y, w, h = 600, 450, 40, 30  # LineMOD bb [x, y, w, h] -> [y, y+h, x, x+w], clamped to 479 / 639
    box = (max(y, 0), min(y + h, 479), max(x, 0), min(x + w, 639))
    assert s.crop_box(box, IMAGE).as_tuple() == (440, 480, 599, 639)


def test_crop_rule_eval_ycb_roi_example():
    x1, y1, x2, y2 = 200.7, 100.2, 259.9, 149.6
    box = (int(y1) + 1, int(y2) - 1, int(x1) + 1, int(x2) - 1)
    assert s.crop_box(box, IMAGE).as_tuple() == (84, 164, 189, 269)


def test_crop_sizes_are_multiples_of_40_and_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        r0, c0 = rng.integers(0, 470), rng.integers(0, 630)
        r1, c1 = rng.integers(r0 + 1, 481), rng.integers(c0 + 1, 641)
        box = s.crop_box((r0, r1, c0, c1), IMAGE)
        assert box.height % 40 == 0 and box.width % 40 == 0
        assert 0 <= box.rmin < box.rmax <= 480 and 0 <= box.cmin < box.cmax <= 640
        assert box.height >= min(r1 - r0, 480) and box.width >= min(c1 - c0, 640)
    # exact multiples stay as they are
    assert s.crop_box((100, 180, 100, 220), IMAGE).as_tuple() == (100, 180, 100, 220)


@pytest.mark.parametrize(
    "shape, box, expected",
    [
        ((720, 1280), (700, 720, 1250, 1280), (680, 720, 1240, 1280)),
        ((720, 1280), (0, 720, 0, 1280), (0, 720, 0, 1280)),  # 720 and 1280 are multiples of 40
        ((100, 100), (10, 95, 10, 95), (12, 92, 12, 92)),  # capped at 80 = largest multiple that fits
        ((100, 100), (90, 100, 0, 5), (60, 100, 0, 40)),
    ],
)
def test_crop_rule_other_image_sizes(shape, box, expected):
    out = s.crop_box(box, shape)
    assert out.as_tuple() == expected
    assert 0 <= out.rmin and out.rmax <= shape[0] and 0 <= out.cmin and out.cmax <= shape[1]


def test_choose_wrap_padding_example():
    valid = np.zeros(16, bool)
    valid[[5, 9, 12]] = True
    choose = s.sample_choose(valid, 8, np.random.default_rng(0))
    assert choose.dtype == np.int64
    np.testing.assert_array_equal(choose, [5, 9, 12, 5, 9, 12, 5, 9])


def test_choose_subset_ascending_and_seeded():
    valid = np.random.default_rng(1).random((80, 120)) > 0.3
    a = s.sample_choose(valid, 500, np.random.default_rng(7))
    b = s.sample_choose(valid, 500, np.random.default_rng(7))
    c = s.sample_choose(valid, 500, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (500,) and np.all(np.diff(a) > 0)
    assert valid.reshape(-1)[a].all()
    with pytest.raises(ValueError):
        s.sample_choose(np.zeros((4, 4), bool), 5, np.random.default_rng(0))


def test_prepare_instance_backprojection_by_hand():
    H, W = 120, 160
    K = np.array([[200.0, 0, 80.0], [0, 210.0, 60.0], [0, 0, 1]])
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = np.zeros((H, W), np.float32)
    mask = np.zeros((H, W), bool)
    mask[50:53, 70:72] = True  # 6 pixels
    depth[50:53, 70:72] = 1.5
    depth[51, 71] = 0.0  # invalid depth: excluded
    inst = s.prepare_instance(rgb, depth, K, mask, num_points=8, rng=np.random.default_rng(0))
    assert inst.box.as_tuple() == (31, 71, 51, 91)
    assert inst.num_valid == 5 and inst.rgb.shape == (40, 40, 3)
    np.testing.assert_array_equal(inst.rgb, rgb[31:71, 51:91])
    rows = inst.choose // 40 + 31
    cols = inst.choose % 40 + 51
    assert list(zip(rows[:5], cols[:5])) == [(50, 70), (50, 71), (51, 70), (52, 70), (52, 71)]
    np.testing.assert_array_equal(inst.choose[5:], inst.choose[:3])  # wrap padding
    r, c = 52, 71
    expected = [(c - 80.0) * 1.5 / 200.0, (r - 60.0) * 1.5 / 210.0, 1.5]
    np.testing.assert_allclose(inst.points[4], expected, rtol=1e-6)
    assert inst.points.dtype == np.float32 and inst.points.shape == (8, 3)


def test_prepare_instance_skips():
    H, W = 60, 80
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    rgb = np.zeros((H, W, 3), np.uint8)
    depth = np.ones((H, W), np.float32)
    mask = np.zeros((H, W), bool)
    with pytest.raises(s.InstanceSkipped, match="empty mask"):
        s.prepare_instance(rgb, depth, K, mask, num_points=10, rng=np.random.default_rng(0))
    mask[10:12, 10:12] = True
    with pytest.raises(s.InstanceSkipped, match="valid depth"):
        s.prepare_instance(rgb, depth, K, mask, num_points=10, rng=np.random.default_rng(0), min_points=5)
    depth[:] = np.nan
    with pytest.raises(s.InstanceSkipped):
        s.prepare_instance(rgb, depth, K, mask, num_points=10, rng=np.random.default_rng(0))


def test_prepare_instance_on_large_and_tiny_images():
    for H, W in ((720, 1280), (100, 100)):
        K = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1.0]])
        rgb = np.zeros((H, W, 3), np.uint8)
        depth = np.full((H, W), 0.8, np.float32)
        mask = np.zeros((H, W), bool)
        mask[H // 4 : H - 5, W // 3 : W - 1] = True
        inst = s.prepare_instance(rgb, depth, K, mask, num_points=64, rng=np.random.default_rng(0))
        b = inst.box
        assert 0 <= b.rmin and b.rmax <= H and 0 <= b.cmin and b.cmax <= W
        assert inst.rgb.shape == (b.height, b.width, 3)
        assert inst.choose.max() < b.height * b.width
        np.testing.assert_allclose(inst.points[:, 2], 0.8)


def test_pixels_of_is_nonzero_in_row_major_order():
    rng = np.random.default_rng(0)
    image = rng.random((48, 64)) < 0.3
    for mask in (image, image[5:40, 7:50], image[::2, ::3], np.zeros((4, 6), bool)):  # slices: not contiguous
        rows, cols = s.pixels_of(mask)
        expected = np.nonzero(mask)
        assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])
        assert rows.dtype == expected[0].dtype
