"""Training samples from BOP datasets, for the estimator/refiner and for the segmenter.

Pose samples (:class:`PoseDataset`) are built with :func:`densefusion_ros.sampling.prepare_instance`,
the same crop-and-sample rule as the node and the evaluation, from each ground-truth instance
with enough visible pixels (its visible mask is the mask). The published augmentation
(fact sheet 5.7) is applied on top:

* colour jitter of the crop like ``ColorJitter(0.2, 0.2, 0.2, 0.05)`` (numpy / OpenCV);
* translation noise ``U(-0.03, 0.03)`` m per axis added to both the cloud and the target;
* optionally a random occluder pasted in front of the object (the published code pastes other
  instances' masks; here a random-coloured ellipse or polygon), and mask noise (erosion or
  dilation by a few pixels, to resemble a segmenter's borders).

Batching: crops differ in size, and one estimator batch needs one size. :class:`SizeGroupedBatchSampler`
groups indices by the crop size known from ``scene_gt_info`` (``bbox_visib``), so that most
batches hold one size; :func:`collate_pose` splits whatever it gets into equal-size groups, which
the trainer runs one after the other with gradient accumulation (batching gains little on one
CPU thread, much on a GPU: models/README.md, "Training throughput").

Determinism: the random draws of sample ``i`` in epoch ``e`` come from
``np.random.default_rng([seed, e, i])``; samplers yield ``(i, e)`` keys so that persistent
workers need no epoch notification.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from densefusion_ros.catalog import Catalog
from densefusion_ros.data import io
from densefusion_ros.data.bop import BopDataset, evenly_spaced, gt_pose, paint_labels
from densefusion_ros.geometry import transform_points
from densefusion_ros.models.transforms import normalize_image, rescale_rgb
from densefusion_ros.sampling import InstanceSkipped, crop_box, mask_box, prepare_instance

__all__ = [
    "Augment",
    "InstanceRef",
    "PoseDataset",
    "SegmentationDataset",
    "SizeGroupedBatchSampler",
    "color_jitter",
    "collate_pose",
    "collate_segmentation",
    "mask_noise",
    "random_occluder",
]


# ---------------------------------------------------------------------------------------------
# augmentation


@dataclass
class Augment:
    """Augmentation settings (all off with :meth:`none`).

    Attributes:
        brightness, contrast, saturation, hue: ColorJitter ranges (published 0.2, 0.2, 0.2, 0.05).
        noise_trans: half-width in metres of the uniform translation noise (published 0.03).
        occluder_prob: probability of pasting a random occluder (not published for LineMOD).
        mask_noise_prob: probability of eroding or dilating the mask by 1..``mask_noise_px`` px.
        mask_noise_px: largest erosion / dilation radius.
    """

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05
    noise_trans: float = 0.03
    occluder_prob: float = 0.0
    mask_noise_prob: float = 0.0
    mask_noise_px: int = 3

    @classmethod
    def none(cls) -> "Augment":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def jitter(self) -> bool:
        return any(v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue))


def _gray(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of float RGB ``(h, w, 3)`` -> ``(h, w, 1)`` (what torchvision uses)."""
    return (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]


def color_jitter(
    rgb: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.05,
) -> np.ndarray:
    """torchvision-style ``ColorJitter`` on an RGB uint8 image ``(h, w, 3)``; returns uint8.

    Factors are drawn uniformly from ``[1 - x, 1 + x]`` (hue shift from ``[-hue, hue]`` of a full
    turn) and the four operations run in a random order, as in torchvision.
    """
    img = rgb.astype(np.float32)
    for op in rng.permutation(4):
        if op == 0 and brightness > 0:
            img = img * rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1 and contrast > 0:
            f = rng.uniform(1 - contrast, 1 + contrast)
            img = img * f + float(_gray(img).mean()) * (1 - f)
        elif op == 2 and saturation > 0:
            f = rng.uniform(1 - saturation, 1 + saturation)
            img = img * f + _gray(img) * (1 - f)
        elif op == 3 and hue > 0:
            shift = rng.uniform(-hue, hue)
            hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 256))) % 256
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def mask_noise(mask: np.ndarray, rng: np.random.Generator, max_px: int = 3) -> np.ndarray:
    """Erode or dilate a boolean mask by a random radius in ``1..max_px`` (never to empty)."""
    r = int(rng.integers(1, max_px + 1))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    m = mask.astype(np.uint8)
    out = cv2.erode(m, kernel) if rng.random() < 0.5 else cv2.dilate(m, kernel)
    return out.astype(bool) if out.any() else mask


def random_occluder(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, max_cover: float = 0.5, tries: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a random ellipse or polygon of random colour and texture over part of the object.

    Args:
        rgb: ``(H, W, 3)`` uint8 (a copy is returned).
        mask: ``(H, W)`` bool object mask.
        max_cover: the occluder may hide at most this share of the mask (else redrawn).

    Returns:
        ``(rgb, mask)`` with the occluded pixels painted and removed from the mask; the inputs
        unchanged if no acceptable occluder was found in ``tries`` draws.
    """
    box = mask_box(mask)
    if box is None:
        return rgb, mask
    r0, r1, c0, c1 = box
    h, w = r1 - r0, c1 - c0
    total = int(mask.sum())
    for _ in range(tries):
        occ = np.zeros(mask.shape, np.uint8)
        cy = int(rng.uniform(r0, r1))
        cx = int(rng.uniform(c0, c1))
        if rng.random() < 0.5:
            axes = (max(2, int(rng.uniform(0.15, 0.5) * w)), max(2, int(rng.uniform(0.15, 0.5) * h)))
            cv2.ellipse(occ, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(0.15, 0.5, k) * max(h, w)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1).astype(np.int32)
            cv2.fillPoly(occ, [pts], 1)
        occ_b = occ.astype(bool)
        hidden = int((occ_b & mask).sum())
        if hidden == 0 or hidden > max_cover * total:
            continue
        out = rgb.copy()
        color = rng.integers(0, 256, 3).astype(np.float32)
        n = int(occ_b.sum())
        tex = np.clip(color + rng.normal(0, 20, (n, 3)), 0, 255).astype(np.uint8)
        out[occ_b] = tex
        return out, mask & ~occ_b
    return rgb, mask


# ---------------------------------------------------------------------------------------------
# pose samples


@dataclass(frozen=True)
class InstanceRef:
    """One ground-truth instance of one frame.

    Attributes:
        frame: index into ``BopDataset.index``.
        gt_idx: position in the frame's ``scene_gt`` list (and mask file number).
        obj_index: the network object index (catalog ``index``).
        crop_hw: crop size ``(h, w)`` that :func:`prepare_instance` will use for the GT visible mask.
        px_visib: visible pixel count from ``scene_gt_info`` (or the mask).
    """

    frame: int
    gt_idx: int
    obj_index: int
    crop_hw: tuple[int, int]
    px_visib: int


def _bbox_to_box(bbox: Sequence[int]) -> tuple[int, int, int, int] | None:
    x, y, w, h = (int(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None
    return (y, y + h, x, x + w)


class PoseDataset(Dataset):
    """Instances of a BOP split as estimator / refiner training samples.

    Args:
        bop: the split (``BopDataset``); its own mask loading is not used.
        catalog: the objects; instances of ids not in the catalog are skipped.
        num_points: N points per sample (published 500 LineMOD, 1000 YCB).
        num_model_points: M model points per sample for the loss (published 500), drawn each time
            from a fixed pool of ``model_pool`` catalog surface points.
        min_visible_px: skip instances with fewer visible pixels (published: > 50 mask pixels).
        min_points: fewer valid depth pixels than this skips (re-draws) a sample.
        augment: :class:`Augment` (``Augment.none()`` for test sets).
        normalization: the checkpoint's image normalisation (see ``models.transforms``).
        seed: base seed of every random draw.
        cache_crops: keep each instance's crop region (RGB, depth, mask) in memory after its first
            load, so later epochs skip PNG decoding (an RGB-D crop and its mask per instance).
        max_instances: keep only the first ``max_instances`` (after an even thinning), e.g. for a
            quick test set.
    """

    def __init__(
        self,
        bop: BopDataset,
        catalog: Catalog,
        *,
        num_points: int = 500,
        num_model_points: int = 500,
        model_pool: int = 1000,
        min_visible_px: int = 50,
        min_points: int = 10,
        augment: Augment | None = None,
        normalization: Mapping[str, Any],
        seed: int = 0,
        cache_crops: bool = False,
        max_instances: int | None = None,
    ):
        self.bop = bop
        self.catalog = catalog
        self.num_points = int(num_points)
        self.num_model_points = int(num_model_points)
        self.model_pool = max(int(model_pool), self.num_model_points)
        self.min_visible_px = int(min_visible_px)
        self.min_points = int(min_points)
        self.augment = augment if augment is not None else Augment()
        self.normalization = dict(normalization)
        self.seed = int(seed)
        self.cache_crops = cache_crops
        self._cache: dict[int, tuple] = {}
        self.refs = self._build_index()
        self.refs = [self.refs[i] for i in evenly_spaced(len(self.refs), max_instances)]
        if not self.refs:
            raise ValueError(
                f"{bop.root}/{bop.split}: no instance of a catalog object with >= {self.min_visible_px} visible pixels"
            )
        self._pools = {o.index: o.sample_points(self.model_pool, seed=0) for o in catalog}
        self._symmetric = {o.index: bool(o.symmetric) for o in catalog}

    # -- index ------------------------------------------------------------------------------

    def _image_shape(self, frame: int) -> tuple[int, int]:
        scene_id, im_id = self.bop.index[frame]
        return tuple(io.read_raw(self.bop.rgb_path(scene_id, im_id)).shape[:2])  # type: ignore[return-value]

    def _build_index(self) -> list[InstanceRef]:
        refs: list[InstanceRef] = []
        shapes: dict[int, tuple[int, int]] = {}
        for f, (scene_id, im_id) in enumerate(self.bop.index):
            gts = self.bop.scene_gt(scene_id).get(im_id, [])
            infos = self.bop.gt_info(scene_id, im_id)
            for gt_idx, entry in enumerate(gts):
                obj = self.catalog.by_class_id(int(entry["obj_id"]))
                if obj is None:
                    continue
                if gt_idx < len(infos):
                    info = infos[gt_idx]
                    px = int(info.get("px_count_visib", 0))
                    box = _bbox_to_box(info.get("bbox_visib", [-1, -1, -1, -1]))
                else:  # no scene_gt_info: read the mask once
                    mask = self._read_mask(f, gt_idx)
                    px, box = int(mask.sum()), mask_box(mask)
                if px < self.min_visible_px or box is None:
                    continue
                if scene_id not in shapes:
                    shapes[scene_id] = self._image_shape(f)
                crop = crop_box(box, shapes[scene_id])
                refs.append(InstanceRef(f, gt_idx, obj.index, (crop.height, crop.width), px))
        return refs

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def crop_sizes(self) -> list[tuple[int, int]]:
        return [r.crop_hw for r in self.refs]

    def preload(self, threads: int = 8) -> None:
        """Load every instance's crop region now (needs ``cache_crops``), with ``threads`` threads.

        Called before the DataLoader starts, the cache is inherited by its forked workers instead
        of each worker decoding every frame again during the first epochs, when training runs
        much slower (models/README.md, "Training throughput").
        """
        if not self.cache_crops:
            raise ValueError("preload needs cache_crops=True")
        from concurrent.futures import ThreadPoolExecutor

        missing = [i for i in range(len(self.refs)) if i not in self._cache]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # cv2 decoding releases the GIL
            for i, region in zip(missing, pool.map(self._read_region, missing)):
                self._cache[i] = region

    # -- loading ----------------------------------------------------------------------------

    def _read_mask(self, frame: int, gt_idx: int) -> np.ndarray:
        scene_id, im_id = self.bop.index[frame]
        mask = self.bop.read_mask(scene_id, im_id, gt_idx)
        if mask is None:
            raise FileNotFoundError(f"no visible mask {self.bop.mask_path(scene_id, im_id, gt_idx)}")
        return mask

    def _load_region(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb, depth_m, K, mask, R, t)`` of instance ``i``: the full frame, or the cached crop region.

        The cached region is exactly the crop box of the GT visible mask, with ``K`` shifted to
        it; :func:`prepare_instance` run on it gives the same crop as on the full frame.
        """
        if i in self._cache:
            return self._cache[i]
        out = self._read_region(i)
        if self.cache_crops:
            self._cache[i] = out
        return out

    def _read_region(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Instance ``i`` read from disk: the crop region with ``cache_crops``, else the full frame."""
        ref = self.refs[i]
        scene_id, im_id = self.bop.index[ref.frame]
        rgb, depth, K = self.bop.read_image(scene_id, im_id)
        mask = self._read_mask(ref.frame, ref.gt_idx)
        R, t = gt_pose(self.bop.scene_gt(scene_id)[im_id][ref.gt_idx])
        out = (rgb, depth, K, mask, R, t)
        if self.cache_crops:
            box = mask_box(mask)
            if box is not None:
                c = crop_box(box, depth.shape[:2])
                sl = (slice(c.rmin, c.rmax), slice(c.cmin, c.cmax))
                K2 = K.copy()
                K2[0, 2] -= c.cmin
                K2[1, 2] -= c.rmin
                out = (rgb[sl].copy(), depth[sl].copy(), K2, mask[sl].copy(), R, t)
        return out

    def sample(self, i: int, rng: np.random.Generator, *, augment: bool = True) -> dict[str, Any]:
        """Build sample ``i`` with ``rng``; raises :class:`InstanceSkipped` when it has no points."""
        ref = self.refs[i]
        aug = self.augment if augment else Augment.none()
        rgb, depth, K, mask, R, t = self._load_region(i)
        if aug.mask_noise_prob > 0 and rng.random() < aug.mask_noise_prob:
            mask = mask_noise(mask, rng, aug.mask_noise_px)
        if aug.occluder_prob > 0 and rng.random() < aug.occluder_prob:
            rgb, mask = random_occluder(rgb, mask, rng)
        inst = prepare_instance(rgb, depth, K, mask, num_points=self.num_points, rng=rng, min_points=self.min_points)
        crop = inst.rgb
        if aug.jitter:
            crop = color_jitter(crop, rng, aug.brightness, aug.contrast, aug.saturation, aug.hue)
        pool = self._pools[ref.obj_index]
        sel = rng.choice(len(pool), size=self.num_model_points, replace=len(pool) < self.num_model_points)
        model_points = pool[sel].astype(np.float32)
        target = transform_points(model_points, R, t).astype(np.float32)
        points = inst.points
        if aug.noise_trans > 0:
            shift = rng.uniform(-aug.noise_trans, aug.noise_trans, 3).astype(np.float32)
            points = points + shift
            target = target + shift
        return {
            "img": normalize_image(crop, self.normalization),
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "choose": torch.from_numpy(inst.choose),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "model_points": torch.from_numpy(model_points),
            "obj": ref.obj_index,
            "symmetric": self._symmetric[ref.obj_index],
            "index": i,
        }

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = (key, 0) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        rng = np.random.default_rng([self.seed, epoch, i])
        for attempt in range(10):
            try:
                # the first retry drops the augmentation (e.g. an occluder that hid every valid pixel)
                return self.sample(i, rng, augment=attempt == 0)
            except InstanceSkipped:
                i = int(rng.integers(len(self.refs)))  # published: re-draw another instance
        raise RuntimeError(f"{self.bop.root}: 10 instances in a row had no valid depth in their mask")


def collate_pose(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group samples by crop size and stack each group.

    Returns:
        a list of batches, each ``{"img" [b,3,h,w], "points" [b,N,3], "choose" [b,N],
        "target" [b,M,3], "model_points" [b,M,3], "obj" [b], "symmetric" [b] bool, "index" [b]}``
        with one crop size per batch (largest group first).
    """
    groups: "OrderedDict[tuple[int, int], list[dict]]" = OrderedDict()
    for s in samples:
        groups.setdefault(tuple(s["img"].shape[-2:]), []).append(s)
    out = []
    for group in sorted(groups.values(), key=len, reverse=True):
        out.append(
            {
                "img": torch.stack([s["img"] for s in group]),
                "points": torch.stack([s["points"] for s in group]),
                "choose": torch.stack([s["choose"] for s in group]),
                "target": torch.stack([s["target"] for s in group]),
                "model_points": torch.stack([s["model_points"] for s in group]),
                "obj": torch.tensor([s["obj"] for s in group], dtype=torch.long),
                "symmetric": torch.tensor([s["symmetric"] for s in group], dtype=torch.bool),
                "index": torch.tensor([s["index"] for s in group], dtype=torch.long),
            }
        )
    return out


class SizeGroupedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, epoch)`` keys whose crops mostly share one size.

    Indices come shuffled (or sharded for DDP: rank ``r`` of ``world`` takes every ``world``-th
    index of the shuffled, padded list, like ``DistributedSampler``) and fill per-size buckets;
    a full bucket becomes a batch. The leftovers are chained into mixed batches at the end, so
    every batch but the last has ``batch_size`` keys and every rank yields ``ceil(n / world /
    batch_size)`` batches (DDP ranks must take the same number of steps).

    Args:
        sizes: crop size of each index.
        batch_size: keys per batch.
        samples_per_epoch: draw this many indices per epoch (with replacement across epochs);
            default: each index once.
        shuffle: shuffle each epoch (seeded by ``seed`` and the epoch).
        rank, world_size: the DDP shard.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        batch_size: int,
        *,
        samples_per_epoch: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        self.sizes = list(sizes)
        self.batch_size = int(batch_size)
        self.samples_per_epoch = int(samples_per_epoch) if samples_per_epoch else len(self.sizes)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (its shuffle and the samples' random draws); skip ``start_batch`` batches."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def _indices(self) -> list[int]:
        n = len(self.sizes)
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        total = self.samples_per_epoch
        if self.shuffle:
            reps = -(-total // n)
            idx = np.concatenate([rng.permutation(n) for _ in range(reps)])[:total]
        else:
            idx = np.resize(np.arange(n), total)
        per_rank = -(-total // self.world_size)
        idx = np.resize(idx, per_rank * self.world_size)  # pad by wrapping, as DistributedSampler
        return idx[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for k, batch in enumerate(self._batches()):
            if k >= self.start_batch:
                yield batch

    def _batches(self) -> Iterator[list[tuple[int, int]]]:
        buckets: dict[tuple[int, int], list[int]] = {}
        leftovers: list[int] = []
        for i in self._indices():
            b = buckets.setdefault(self.sizes[i], [])
            b.append(i)
            if len(b) == self.batch_size:
                yield [(j, self.epoch) for j in b]
                b.clear()
        for b in buckets.values():
            leftovers.extend(b)
        for start in range(0, len(leftovers), self.batch_size):
            chunk = leftovers[start : start + self.batch_size]
            if len(chunk) < self.batch_size and self.drop_last:
                return
            yield [(j, self.epoch) for j in chunk]

    def __len__(self) -> int:
        per_rank = -(-self.samples_per_epoch // self.world_size)
        n = per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)
        return max(0, n - self.start_batch)


# ---------------------------------------------------------------------------------------------
# segmentation samples


class SegmentationDataset(Dataset):
    """Full frames with per-pixel labels for the segmenter.

    The label of a pixel is ``catalog index + 1`` of the visible instance covering it, 0 for
    background (the segmenter's class convention). Augmentation (train): random flips (none,
    left-right, up-down or both, as published) and colour jitter.

    Args:
        bop: the split.
        catalog: the objects (ids not in the catalog stay background).
        normalization: the image normalisation of the checkpoint.
        scale: resize factor for the frames (e.g. 0.5 for faster CPU training); labels use
            nearest-neighbour resizing.
        augment: apply flips and jitter.
        seed: base seed.
        max_frames: evenly thin the split to at most this many frames.
    """

    def __init__(
        self,
        bop: BopDataset,
        catalog: Catalog,
        *,
        normalization: Mapping[str, Any],
        scale: float = 1.0,
        augment: bool = True,
        jitter: Augment | None = None,
        seed: int = 0,
        max_frames: int | None = None,
    ):
        self.bop = bop
        self.catalog = catalog
        self.normalization = dict(normalization)
        self.scale = float(scale)
        self.augment = augment
        self.jitter = jitter if jitter is not None else Augment()
        self.seed = int(seed)
        self.frames = evenly_spaced(len(bop.index), max_frames)
        self.num_classes = catalog.num_objects + 1

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb (H, W, 3) uint8, label (H, W) int64)`` of frame ``i`` at the dataset's scale."""
        scene_id, im_id = self.bop.index[self.frames[i]]
        rgb = io.read_rgb(self.bop.rgb_path(scene_id, im_id))
        layers = []
        for gt_idx, entry in enumerate(self.bop.scene_gt(scene_id).get(im_id, [])):
            obj = self.catalog.by_class_id(int(entry["obj_id"]))
            mask = self.bop.read_mask(scene_id, im_id, gt_idx) if obj is not None else None
            if mask is not None:
                layers.append((float(entry["cam_t_m2c"][2]), mask, obj.index + 1))
        label = paint_labels(rgb.shape[:2], layers, np.int64)
        if self.scale != 1.0:
            rgb = rescale_rgb(rgb, self.scale)
            size = (rgb.shape[1], rgb.shape[0])
            label = cv2.resize(label.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(np.int64)
        return rgb, label

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch = (key, 0) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        rgb, label = self.load(i)
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, i, 1])
            flip = int(rng.integers(4))  # 0 none, 1 left-right, 2 up-down, 3 both
            if flip & 1:
                rgb, label = rgb[:, ::-1], label[:, ::-1]
            if flip & 2:
                rgb, label = rgb[::-1], label[::-1]
            j = self.jitter
            if j.jitter:
                rgb = color_jitter(np.ascontiguousarray(rgb), rng, j.brightness, j.contrast, j.saturation, j.hue)
        img = normalize_image(np.ascontiguousarray(rgb), self.normalization)
        return img, torch.from_numpy(np.ascontiguousarray(label))


def collate_segmentation(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group frames by size and stack: a list of ``(img [b,3,H,W], label [b,H,W])``."""
    groups: "OrderedDict[tuple[int, int], list]" = OrderedDict()
    for img, lab in samples:
        groups.setdefault(tuple(img.shape[-2:]), []).append((img, lab))
    return [(torch.stack([g[0] for g in grp]), torch.stack([g[1] for g in grp])) for grp in groups.values()]

