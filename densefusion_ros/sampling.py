"""The one rule for crops and point samples, shared by the node, training and evaluation.

It follows the published DenseFusion preprocessing (``get_bbox`` and the ``choose`` sampling of
``datasets/*/dataset.py``), generalised to any image size:

* the crop box is the object box rounded **up** to a multiple of ``step`` (40) per side,
  centred on the box and shifted back inside the image without changing its size;
* ``choose`` indexes the row-major flattened crop where the mask holds and depth is valid;
  more than N pixels: a random subset of exactly N, kept in ascending order; N or fewer:
  wrap-padded (``np.pad(..., 'wrap')``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densefusion_ros.geometry import backproject

CROP_STEP = 40


@dataclass(frozen=True)
class CropBox:
    """A half-open pixel box ``[rmin, rmax) x [cmin, cmax)``."""

    rmin: int
    rmax: int
    cmin: int
    cmax: int

    @property
    def height(self) -> int:
        return self.rmax - self.rmin

    @property
    def width(self) -> int:
        return self.cmax - self.cmin

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.rmin, self.rmax, self.cmin, self.cmax)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open ``(rmin, rmax, cmin, cmax)`` of a boolean mask (``rmax`` = last row + 1), or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _round_up(size: int, step: int, limit: int) -> int:
    """Round ``size`` up to a multiple of ``step`` (at least one step), capped to fit in ``limit``."""
    rounded = max(step, -(-size // step) * step)
    return min(rounded, max(step, (limit // step) * step), limit)


def crop_box(box: tuple[int, int, int, int], image_shape: tuple[int, int], step: int = CROP_STEP) -> CropBox:
    """The published ``get_bbox`` rule for a half-open box ``(rmin, rmax, cmin, cmax)``.

    Sizes round up to multiples of ``step``; the box is centred at ``int((min+max)/2)`` and then
    shifted inside an image of ``image_shape = (height, width)``. Sizes are capped at the largest
    multiple of ``step`` that fits in the image (the published code assumed 480x640).
    """
    rmin, rmax, cmin, cmax = (int(v) for v in box)
    height, width = int(image_shape[0]), int(image_shape[1])
    r_b = _round_up(rmax - rmin, step, height)
    c_b = _round_up(cmax - cmin, step, width)
    center_r, center_c = int((rmin + rmax) / 2), int((cmin + cmax) / 2)
    r0, c0 = center_r - r_b // 2, center_c - c_b // 2
    r0 = min(max(r0, 0), height - r_b)
    c0 = min(max(c0, 0), width - c_b)
    return CropBox(r0, r0 + r_b, c0, c0 + c_b)


def sample_choose(valid: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_points,)`` int64 indices into the flattened crop where ``valid`` (``(h, w)`` bool) holds.

    A random subset in ascending order when there are more, wrap-padded when fewer.
    Raises ``ValueError`` when no pixel is valid.
    """
    choose = np.flatnonzero(valid.reshape(-1))
    if choose.size == 0:
        raise ValueError("no valid pixel in the mask")
    if choose.size > num_points:
        keep = np.sort(rng.choice(choose.size, size=num_points, replace=False))
        return choose[keep].astype(np.int64)
    return np.pad(choose, (0, num_points - choose.size), mode="wrap").astype(np.int64)


@dataclass
class InstanceInput:
    """What the estimator needs for one object instance.

    Attributes:
        box: the crop box in the full image.
        rgb: the RGB crop ``(h, w, 3)`` uint8, not masked (as published).
        choose: ``(N,)`` int64 indices into the flattened ``h*w`` crop.
        points: ``(N, 3)`` float32 camera-frame points in metres, in ``choose`` order.
        num_valid: the number of distinct valid pixels before sampling / padding.
    """

    box: CropBox
    rgb: np.ndarray
    choose: np.ndarray
    points: np.ndarray
    num_valid: int

    @property
    def distinct_points(self) -> np.ndarray:
        """``points`` without the repeats that padding to N adds: ``(M, 3)``, in ``choose`` order."""
        _, first = np.unique(self.choose, return_index=True)
        return self.points[np.sort(first)]


class InstanceSkipped(ValueError):
    """An instance that cannot be estimated; ``str(err)`` says why."""


def valid_depth(depth_m: np.ndarray) -> np.ndarray:
    """Pixels whose metric depth is finite and positive: ``(H, W)`` bool of ``depth_m (H, W)`` metres."""
    return np.isfinite(depth_m) & (depth_m > 0)


def pixels_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``(N,)`` int64 of the True pixels of ``mask (H, W)``, row-major: the same
    as ``np.nonzero(mask)``, from one flat scan instead of two index arrays (docs/design_notes.md,
    'tracking: whole-image scans in a steady frame')."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def observed_points(
    depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray, box: CropBox, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``count`` distinct valid depth points of ``mask`` inside ``box``, ``(M, 3)`` camera frame, metres.

    For the geometric stages (ICP), which gain from more of the surface than the network's N points;
    a random subset in ascending pixel order when the mask has more.
    """
    sl = (slice(box.rmin, box.rmax), slice(box.cmin, box.cmax))
    rows, cols = pixels_of(mask[sl] & valid_depth(depth_m[sl]))
    if len(rows) > count:
        pick = np.sort(rng.choice(len(rows), count, replace=False))
        rows, cols = rows[pick], cols[pick]
    return backproject(depth_m, K, rows + box.rmin, cols + box.cmin)


def prepare_instance(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    mask: np.ndarray,
    *,
    num_points: int,
    rng: np.random.Generator,
    min_points: int = 1,
    box: tuple[int, int, int, int] | None = None,
    step: int = CROP_STEP,
) -> InstanceInput:
    """Crop, sample and back-project one instance; raises :class:`InstanceSkipped` with a reason.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        depth_m: ``(H, W)`` float depth in metres (0, NaN or inf = invalid).
        K: ``(3, 3)`` intrinsics.
        mask: ``(H, W)`` bool object mask.
        num_points: N, the points per instance.
        rng: the generator that picks the subset (seed it for repeatable runs).
        min_points: fewer distinct valid depth pixels than this skips the instance.
        box: an explicit half-open ``(rmin, rmax, cmin, cmax)`` box to round (e.g. a detector's);
            by default the mask's box.
    """
    if box is None:
        box = mask_box(mask)
        if box is None:
            raise InstanceSkipped("empty mask")
    crop = crop_box(box, depth_m.shape[:2], step)
    sl = (slice(crop.rmin, crop.rmax), slice(crop.cmin, crop.cmax))
    valid = mask[sl] & valid_depth(depth_m[sl])
    num_valid = int(valid.sum())
    if num_valid == 0 or num_valid < min_points:
        raise InstanceSkipped(f"{num_valid} valid depth points in the mask, need {max(min_points, 1)}")
    choose = sample_choose(valid, num_points, rng)
    rows = choose // crop.width + crop.rmin
    cols = choose % crop.width + crop.cmin
    points = backproject(depth_m, K, rows, cols)
    return InstanceInput(crop, np.ascontiguousarray(rgb[sl]), choose, points, num_valid)
