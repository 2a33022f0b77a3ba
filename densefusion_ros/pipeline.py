"""The ROS-free DenseFusion inference pipeline: frame -> masks -> crops and points -> poses.

Stages of :meth:`Pipeline.__call__` (timed per stage, in ms):

1. **segmentation**: the segmenter's argmax over the full image gives a label image, unless the
   frame brings ``masks`` (used as given) or a ``label`` image.
2. **instances**: one instance per class id present (the published rule); connected components
   are optional (``PipelineConfig.instances``, see there; with ``"best"`` the choice among a
   class's components comes after stage 6 and is timed here). Masks smaller than
   ``min_mask_pixels`` and class ids missing from the catalog are skipped with a reason.
3. **preprocess**: :func:`densefusion_ros.sampling.prepare_instance` per instance (the shared
   crop + ``choose`` + back-projection rule); too few valid depth points -> skipped.
4. **estimator**: the color CNN (``DenseFusionEstimator.embed``) runs once per group of equal
   crop size (it needs one H x W per batch); the point fusion and heads
   (``DenseFusionEstimator.forward_best``) run once over all instances. The best hypothesis is
   the most confident point: ``R = R(q_best / |q_best|)``, ``t = points[best] + trans[best]``.
5. **refiner**: K iterations, batched over all instances: ``p' = R^T (p - t)``,
   ``(q2, t2) = refiner(p', emb, obj)``, ``R <- R R2``, ``t <- R t2 + t`` (fact sheet 4.8),
   with the estimator's embedding reused.
6. **icp** (optional, :mod:`densefusion_ros.icp`): ``"after"`` the refiner, ``"verify"``
   (hypotheses around the refined pose, checked against the depth image), or ``"only"`` (no
   network pose; centroid initialisation).

:meth:`Pipeline.run_per_object` is the published one-object-at-a-time inference (batch 1,
numpy composition through w-first quaternions as in ``tools/eval_ycb.py``); it shares stages
1-3 and gives the same poses as the batched path to float32 rounding.

Conventions: quaternions are **w-first** ``[w, x, y, z]`` (:attr:`InstanceResult.quaternion_wxyz`;
ROS order is :attr:`InstanceResult.quaternion_xyzw`); ``(R, t)`` maps object points to the
camera optical frame, metres. No ROS imports here.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import nn

from densefusion_ros import geometry
from densefusion_ros.catalog import Catalog, ObjectInfo
from densefusion_ros.choices import ICP_MODES, INSTANCE_RULES
from densefusion_ros.cuda_graphs import CudaGraphs
from densefusion_ros.frame import Frame, box_frame
from densefusion_ros.icp import IcpOptions, icp_from_centroid, pose_score, refine_pose, refine_with_hypotheses
from densefusion_ros.models.blocks import fuse_batchnorm
from densefusion_ros.models.metadata import metadata_of
from densefusion_ros.models.transforms import PUBLISHED_NORMALIZATION, normalize_image, rescale_rgb
from densefusion_ros.runtime import resolve_device
from densefusion_ros.sampling import CROP_STEP, InstanceInput, InstanceSkipped, mask_box, observed_points, prepare_instance
from densefusion_ros.support_plane import support_plane
from densefusion_ros.verify import DepthEvidence, ModelGeometry, VerifyInput, pose_covariance, verify_instances

__all__ = [
    "PipelineConfig",
    "InstanceResult",
    "FrameResult",
    "Pipeline",
    "STAGES",
    "resolve_device",
    "validate_frame",
]

log = logging.getLogger(__name__)

STAGES = ("segmentation", "preprocess", "estimator", "refiner", "icp", "track", "total")
DEFAULT_NUM_POINTS = 1000


@dataclass
class PipelineConfig:
    """Pipeline settings.

    Attributes:
        num_points: points per instance (N); ``None`` = the estimator checkpoint's ``num_points``
            metadata, else 1000 (published YCB; LineMOD used 500).
        refine_iterations: K refiner iterations (published: 2 for YCB, 4 for LineMOD eval);
            ignored without a refiner.
        min_mask_pixels: smaller masks are skipped (the published training redraws below 50).
        min_points: fewer distinct valid depth pixels in the mask skip the instance.
        score_threshold: instances whose best confidence is lower are skipped.
        seed: ``None`` = random point subsets; an int makes every call repeatable (each instance
            draws from ``default_rng([seed, class_id, instance])``, independent of the others).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        fp16: float16 autocast for the networks on CUDA (ignored on CPU); poses compose in float32.
        icp: ``"none"`` (published), ``"after"`` (ICP from the network pose), ``"verify"`` (ICP
            from the network pose turned by each rotation of ``icp_options.rotation_group``, the
            result most consistent with the depth image kept; the default: the networks alone are
            often a turn off) or ``"only"`` (ICP from the centroid, no networks); see
            :mod:`densefusion_ros.icp` and :mod:`densefusion_ros.verify`.
        icp_options: :class:`~densefusion_ros.icp.IcpOptions`.
        instances: how a class's mask becomes instances: ``"class"`` (published: the whole mask
            of a class id is one instance), ``"largest"`` (keep the largest 8-connected
            component; drops segmentation specks that would inflate the crop box),
            ``"best"`` (the largest ``candidates`` components all go through the networks and
            the ICP stage; the one whose final pose best explains the depth image is kept:
            :func:`~densefusion_ros.icp.pose_score`, the ``"verify"`` score) or ``"split"``
            (every component of at least ``min_mask_pixels`` is an instance, numbered by
            decreasing size). External ``frame.masks`` are always one instance per entry.
            ``"best"`` (default) keeps a pose off a distractor of the object's colour that the
            segmenter labelled as the object and that is larger than it (models/README.md,
            "Choosing among a class's mask components", compares the rules). One instance per
            class, as ``"largest"``, numbered 0.
        candidates, candidate_share: ``instances="best"``: at most ``candidates`` components per
            class are estimated and scored, the largest ones with at least ``candidate_share`` of
            the largest one's pixels (smaller specks are rarely the object, and each candidate
            costs a network pass and, with ``icp="verify"``, 60 ICP runs).
        crop_step: crop sizes are multiples of this (published 40).
        keep_masks: store each instance's full-image mask in its result.
        fast_head: batched mode only: :meth:`DenseFusionEstimator.forward_best
            <densefusion_ros.models.DenseFusionEstimator.forward_best>` (the rotation and
            translation heads only at the most confident point) instead of ``forward_head`` on
            every point and an argmax. Same values up to float rounding.
        cpu_point_rows: batched mode on CPU only: the point networks (estimator fusion and
            heads, refiner) run on point rows ``[B*N,C]``, one GEMM per 1x1 conv, instead of the
            published channels-first ``Conv1d`` layout (:mod:`densefusion_ros.models.fusion`),
            with the global branch and the confidence head in blocks of 256 rows whose maps stay
            in the CPU cache (:func:`~densefusion_ros.models.fusion.row_blocks`); all instances go
            in one call. Same values up to float rounding.
        per_object: make ``__call__`` run the published one-object-at-a-time loop
            (:meth:`Pipeline.run_per_object`) instead of the batched path.
        fuse_batchnorm: run inference copies of the networks with BatchNorm folded into the
            convolutions (:func:`~densefusion_ros.models.fuse_batchnorm`; the compact colour net
            and segmenter; the published PSPNet has none). Same values up to float rounding.
        cuda_graphs: on CUDA, the batched path replays its network calls (colour CNN per
            crop-size group, estimator heads, the K refiner iterations) through CUDA graphs
            captured once per input shape (:class:`~densefusion_ros.cuda_graphs.CudaGraphs`):
            the same kernels without Python's per-kernel launch cost. A crop size or instance
            count runs eagerly when first seen and is captured when it recurs. Ignored on CPU.
    """

    num_points: int | None = None
    refine_iterations: int = 2
    min_mask_pixels: int = 50
    min_points: int = 20
    score_threshold: float = 0.0
    seed: int | None = None
    device: str = "cpu"
    fp16: bool = False
    icp: Literal["none", "after", "only", "verify"] = "verify"
    icp_options: IcpOptions = field(default_factory=IcpOptions)
    instances: Literal["class", "largest", "best", "split"] = "best"
    candidates: int = 3
    candidate_share: float = 0.25
    crop_step: int = CROP_STEP
    keep_masks: bool = True
    fast_head: bool = True
    cpu_point_rows: bool = True
    per_object: bool = False
    fuse_batchnorm: bool = True
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        if self.icp not in ICP_MODES:
            raise ValueError(f"icp must be one of {ICP_MODES}, got {self.icp!r}")
        if self.instances not in INSTANCE_RULES:
            raise ValueError(f"instances must be one of {INSTANCE_RULES}, got {self.instances!r}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if not 0.0 <= self.candidate_share <= 1.0:
            raise ValueError(f"candidate_share must be in [0, 1], got {self.candidate_share}")
        if self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be >= 0, got {self.refine_iterations}")
        if self.num_points is not None and self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.seed is not None and int(self.seed) < 0:
            raise ValueError(f"seed must be None or >= 0, got {self.seed}")


@dataclass
class InstanceResult:
    """The pose of one object instance.

    Attributes:
        name, class_id, index: catalog name, label / BOP id, network object index.
        instance: instance number within the class (0 unless ``instances="split"``).
        R: ``(3, 3)`` float64 rotation, object -> camera.
        t: ``(3,)`` float64 translation, metres, camera optical frame.
        quaternion_wxyz: ``(4,)`` w-first unit quaternion of ``R`` with ``w >= 0``.
        confidence: the estimator's best per-point confidence in (0, 1) (ICP fitness with ``icp="only"``).
        box: the crop box ``(rmin, rmax, cmin, cmax)``, half-open, pixels.
        num_points: distinct valid depth pixels in the mask (before sampling / padding).
        mask: ``(H, W)`` bool instance mask (None with ``keep_masks=False``).
        icp_fitness, icp_rmse: ICP quality when ICP ran (rmse in metres).
        track_id: the :class:`~densefusion_ros.tracking.Tracker`'s id of the object, stable
            across frames while it is followed; None from single-frame estimation.
        covariance: ``(6, 6)`` of the pose from its fit to the observed points
            (:func:`~densefusion_ros.verify.pose_covariance`: x, y, z in m, then turns about the
            camera's axes in rad), or None when the fit cannot tell (too few points).
    """

    name: str
    class_id: int
    index: int
    instance: int
    R: np.ndarray
    t: np.ndarray
    quaternion_wxyz: np.ndarray
    confidence: float
    box: tuple[int, int, int, int]
    num_points: int
    mask: np.ndarray | None = None
    icp_fitness: float | None = None
    icp_rmse: float | None = None
    track_id: int | None = None
    covariance: np.ndarray | None = None

    def moved(self, R: np.ndarray, t: np.ndarray) -> "InstanceResult":
        """This instance in another frame: ``(R (3, 3), t (3,))`` maps this pose's frame into it
        (the pose composed, the covariance turned with it)."""
        R_new, t_new = geometry.compose(R, t, self.R, self.t)
        covariance = None
        if self.covariance is not None:
            B = np.kron(np.eye(2), R)  # shifts and turns both turn with the frame
            covariance = B @ self.covariance @ B.T
        return replace(self, R=R_new, t=t_new, quaternion_wxyz=geometry.matrix_to_quat(R_new), covariance=covariance)

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        """The rotation as a ROS-order ``[x, y, z, w]`` quaternion."""
        return geometry.wxyz_to_xyzw(self.quaternion_wxyz)

    @property
    def pose_matrix(self) -> np.ndarray:
        """``(4, 4)`` homogeneous object -> camera transform."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R, self.t
        return T


@dataclass
class FrameResult:
    """Everything the pipeline says about one frame.

    Attributes:
        instances: the estimated poses.
        skipped: ``(class_id, reason)`` per instance that was not estimated.
        timings_ms: per stage (:data:`STAGES`), milliseconds.
        error: why the whole frame was skipped (bad input), else None.
        label: the segmentation label image (class ids) when the segmenter ran.
    """

    instances: list[InstanceResult] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in STAGES})
    error: str | None = None
    label: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _label_ids(labels: np.ndarray) -> np.ndarray:
    """The sorted distinct values ``(n,)`` of a label image ``(H, W)``: a histogram for small
    non-negative integer ids (OpenCV's for uint8 / uint16, the fastest of the three on a camera
    frame: docs/design_notes.md, 'pipeline: label histogram'), else ``np.unique``."""
    if labels.dtype in (np.uint8, np.uint16) and labels.size:
        top = int(labels.max()) + 1
        return np.flatnonzero(cv2.calcHist([labels], [0], None, [top], [0, top]).ravel())
    if labels.dtype.kind in "ui" and labels.size and labels.min() >= 0 and labels.max() < 65536:
        return np.flatnonzero(np.bincount(labels.ravel()))
    return np.unique(labels)


def validate_frame(frame: Frame) -> None:
    """Raise ``ValueError`` naming the first problem with ``frame``'s arrays.

    Checks: ``rgb`` ``(H, W, 3)`` uint8; ``depth_m`` ``(H, W)`` floating point metres with at
    least one finite positive value; ``K`` ``(3, 3)`` finite with positive focal lengths;
    ``label`` ``(H, W)`` integer; each of ``masks`` ``(H, W)`` bool or integer.
    """
    rgb, depth, K = frame.rgb, frame.depth_m, frame.K
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be an (H, W, 3) array, got {getattr(rgb, 'shape', type(rgb).__name__)}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 RGB, got {rgb.dtype}")
    H, W = rgb.shape[:2]
    if H < 1 or W < 1:
        raise ValueError(f"rgb is empty: {rgb.shape}")
    if not isinstance(depth, np.ndarray) or depth.shape != (H, W):
        raise ValueError(f"depth_m must be ({H}, {W}) like rgb, got {getattr(depth, 'shape', type(depth).__name__)}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth_m must be float metres, got {depth.dtype} (convert raw depth with frame.depth_to_metres)")
    K = np.asarray(K) if K is not None else None
    if K is None or K.shape != (3, 3) or not np.issubdtype(K.dtype, np.number):
        raise ValueError(f"K must be a (3, 3) matrix, got {getattr(K, 'shape', None)}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be finite with positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not (np.isfinite(depth) & (depth > 0)).any():
        raise ValueError("depth_m has no valid (finite, positive) value")
    if frame.label is not None:
        label = frame.label
        if not isinstance(label, np.ndarray) or label.shape != (H, W):
            raise ValueError(f"label must be ({H}, {W}), got {getattr(label, 'shape', type(label).__name__)}")
        if not (np.issubdtype(label.dtype, np.integer) or label.dtype == bool):
            raise ValueError(f"label must hold integer class ids, got {label.dtype}")
    if frame.masks is not None:
        if not isinstance(frame.masks, dict):
            raise ValueError(f"masks must be a dict {{class_id: (H, W) mask}}, got {type(frame.masks).__name__}")
        for cid, mask in frame.masks.items():
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                raise ValueError(f"masks keys must be integer class ids, got {cid!r}")
            if not isinstance(mask, np.ndarray) or mask.shape != (H, W):
                raise ValueError(f"mask of class {cid} must be ({H}, {W}), got {getattr(mask, 'shape', type(mask).__name__)}")
            if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
                raise ValueError(f"mask of class {cid} must be bool or integer, got {mask.dtype}")


@dataclass
class _Item:
    """One instance on its way through the pipeline."""

    info: ObjectInfo
    instance: int
    mask: np.ndarray
    box: tuple[int, int, int, int] | None = None  # the mask's bounding box, when already known
    prep: InstanceInput | None = None


class _Timer:
    """Accumulates wall time per stage; synchronises CUDA so that GPU work lands in its stage."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.ms = {k: 0.0 for k in STAGES}
        self.start = self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.ms[stage] += (now - self.last) * 1e3
        self.last = now

    def done(self) -> dict[str, float]:
        self.ms["total"] = (time.perf_counter() - self.start) * 1e3
        return self.ms


def _network_normalization(module: nn.Module | None) -> dict:
    return dict(metadata_of(module).normalization or PUBLISHED_NORMALIZATION)


class Pipeline:
    """DenseFusion on one frame: ``Pipeline(estimator, catalog, config, refiner=..., segmenter=...)(frame)``.

    Args:
        estimator: a :class:`~densefusion_ros.models.DenseFusionEstimator` (``None`` only with
            ``icp="only"``).
        catalog: the objects; ``ObjectInfo.index`` is the network object index and
            ``class_id`` the label value.
        config: :class:`PipelineConfig`.
        refiner: optional :class:`~densefusion_ros.models.DenseFusionRefiner`.
        segmenter: optional segmenter (logits ``[B, objects + 1, H, W]``; channel ``j + 1`` =
            network index ``j``). Needed unless frames carry ``label`` or ``masks``.

    The modules are moved to the configured device and put in eval mode; with
    ``config.fuse_batchnorm`` the pipeline then holds BatchNorm-folded copies of those that have
    BatchNorm, so later changes to the originals do not reach it. Images are normalised
    with each network's ``normalization`` metadata (published convention when absent).
    """

    def __init__(
        self,
        estimator: nn.Module | None,
        catalog: Catalog,
        config: PipelineConfig | None = None,
        *,
        refiner: nn.Module | None = None,
        segmenter: nn.Module | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.catalog = catalog
        self.device = resolve_device(self.config.device)
        if estimator is None and self.config.icp != "only":
            raise ValueError("an estimator is required unless icp='only'")
        inference = fuse_batchnorm if self.config.fuse_batchnorm else (lambda m: m)
        self.estimator = inference(estimator.to(self.device).eval()) if estimator is not None else None
        self.refiner = refiner.to(self.device).eval() if refiner is not None else None
        self.segmenter = inference(segmenter.to(self.device).eval()) if segmenter is not None else None
        self.num_points = self.config.num_points or int(metadata_of(estimator).num_points or DEFAULT_NUM_POINTS)
        self._est_norm = _network_normalization(self.estimator)
        self._seg_norm = _network_normalization(self.segmenter)
        self._seg_scale = float(metadata_of(segmenter).input_scale or 1.0)
        self._rng = np.random.default_rng()
        self._geometry: dict[tuple, ModelGeometry] = {}
        self._rows = self.device.type == "cpu" and self.config.cpu_point_rows
        graphs = self.device.type == "cuda" and self.config.cuda_graphs
        self._embed_net = CudaGraphs(self._embed, name="estimator.embed") if graphs else self._embed
        self._head_net = CudaGraphs(self._head, name="estimator head") if graphs else self._head
        self._refine_net = CudaGraphs(self._refine, name="refiner") if graphs else self._refine
        num_objects = getattr(self.estimator, "num_objects", None)
        for info in catalog:
            if num_objects is not None and not 0 <= info.index < num_objects:
                log.warning(
                    "catalog object %s has index %d outside the estimator's %d objects", info.name, info.index, num_objects
                )

    @classmethod
    def from_checkpoints(
        cls,
        estimator: str | Path | None,
        catalog: Catalog | str | Path,
        config: PipelineConfig | None = None,
        *,
        refiner: str | Path | None = None,
        segmenter: str | Path | None = None,
    ) -> "Pipeline":
        """Load the networks with :mod:`densefusion_ros.models` loaders and build the pipeline."""
        from densefusion_ros import models

        config = config or PipelineConfig()
        device = resolve_device(config.device)
        catalog = catalog if isinstance(catalog, Catalog) else Catalog.load(catalog)
        est = models.load_estimator(estimator, device=device) if estimator else None
        ref = models.load_refiner(refiner, device=device) if refiner else None
        seg = models.load_segmenter(segmenter, device=device) if segmenter else None
        return cls(est, catalog, config, refiner=ref, segmenter=seg)

    # ------------------------------------------------------------------------------------------
    # public entry points

    def __call__(self, frame: Frame) -> FrameResult:
        """Estimate all poses in ``frame`` (batched unless ``config.per_object``).

        Never raises on bad input: the frame's problem is in ``FrameResult.error`` and each
        instance that could not be estimated is in ``FrameResult.skipped`` with a reason.
        """
        return self._run(frame, per_object=bool(self.config.per_object))

    def run_per_object(self, frame: Frame) -> FrameResult:
        """The published one-object-at-a-time inference (batch 1 per network call), same results."""
        return self._run(frame, per_object=True)

    # ------------------------------------------------------------------------------------------

    def _run(self, frame: Frame, *, per_object: bool) -> FrameResult:
        timer = _Timer(self.device)
        result = FrameResult()
        try:
            validate_frame(frame)
            if frame.masks is None and frame.label is None and self.segmenter is None:
                raise ValueError("no segmenter, and the frame has neither label nor masks")
        except ValueError as e:
            result.error = f"invalid frame: {e}"
            result.timings_ms = timer.done()
            return result
        with torch.inference_mode():
            items, label = self._instances(frame, result.skipped)
            result.label = label
            timer.lap("segmentation")
            items = self._preprocess(frame, items, result.skipped)
            timer.lap("preprocess")
            if items and self.config.icp == "only":
                poses = [(np.eye(3), np.zeros(3), 0.0)] * len(items)
            elif items:
                estimate = self._estimate_loop if per_object else self._estimate_batched
                poses = estimate(items, timer)
            else:
                poses = []
            items, poses = self._threshold(items, poses, result.skipped)
            icp_info = self._icp(frame, items, poses, timer) if self.config.icp != "none" else [None] * len(items)
            if self.config.instances == "best":
                items, poses, icp_info = self._keep_best(frame, items, poses, icp_info, result.skipped)
                timer.lap("segmentation")  # choosing among a class's components is part of stage 2
            items, poses, icp_info = self._depth_checked(frame, items, poses, icp_info, result.skipped)
        result.instances = [self._result(it, pose, icp) for it, pose, icp in zip(items, poses, icp_info)]
        result.timings_ms = timer.done()
        return result

    # stage 1 + 2 ----------------------------------------------------------------------------

    def _segmenter_lut(self, num_channels: int) -> np.ndarray:
        """Segmenter channel -> class id: channel ``j + 1`` is network index ``j``; 0 and unknown -> 0."""
        lut = np.zeros(max(num_channels, 1), np.int64)
        for info in self.catalog:
            if 0 <= info.index + 1 < len(lut):
                lut[info.index + 1] = info.class_id
        return lut

    def warm_up(self) -> None:
        """Build every catalog object's model geometry (:meth:`model_geometry`, built lazily
        otherwise) and run each network once on :func:`~densefusion_ros.frame.box_frame`, so that
        no object's first frame pays for them: a node calls it before its first frame, an
        evaluation before its clock starts."""
        if not len(self.catalog):
            return
        for info in self.catalog:
            _ = (info.extents, info.bbox_center, info.diameter, info.sample_points(500))  # loaded from the mesh at first use
            self.model_geometry(info)
        box = box_frame()
        frame = replace(box, label=None)
        self(replace(frame, masks={next(iter(self.catalog)).class_id: box.label == 1}))
        if self.segmenter is not None:
            self(frame)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Label image ``(H, W)`` int64 of class ids from the segmenter's argmax (stage 1 alone).

        A segmenter trained on resized frames (its ``input_scale`` metadata, e.g. 0.5) sees the
        frame resized the same way; its logits are upsampled bilinearly before the argmax.
        """
        if self.segmenter is None:
            raise ValueError("this pipeline has no segmenter")
        height, width = rgb.shape[:2]
        img = normalize_image(rescale_rgb(rgb, self._seg_scale)[None], self._seg_norm, device=self.device)
        with torch.inference_mode(), self._autocast():
            logits = self.segmenter(img)
            if logits.shape[-2:] != (height, width):
                logits = nn.functional.interpolate(
                    logits.float(), size=(height, width), mode="bilinear", align_corners=False
                )
        channels = logits[0].argmax(0).cpu().numpy()
        return self._segmenter_lut(int(logits.shape[1]))[channels]

    def _instances(self, frame: Frame, skipped: list) -> tuple[list[_Item], np.ndarray | None]:
        """Masks per instance, from ``frame.masks``, ``frame.label`` or the segmenter (in that order)."""
        label = None
        if frame.masks is not None:
            per_class = [(int(cid), np.asarray(m) != 0, False) for cid, m in frame.masks.items()]
        else:
            labels = frame.label if frame.label is not None else self.segment(frame.rgb)
            if frame.label is None:
                label = labels  # report only what the segmenter made
            ids = _label_ids(labels)
            per_class = [(int(cid), labels == cid, True) for cid in ids[ids != 0]]
        items = []
        min_px = max(int(self.config.min_mask_pixels), 1)
        for cid, mask, from_label in per_class:
            info = self.catalog.by_class_id(cid)
            if info is None:
                skipped.append((cid, f"class id {cid} is not in the catalog"))
                continue
            for k, (m, n, box) in enumerate(self._components(mask) if from_label else [(mask, None, None)]):
                n = int(m.sum()) if n is None else n
                if n < min_px:  # components come largest first: the rest are smaller still
                    if k == 0:
                        skipped.append((cid, "empty mask" if n == 0 else f"mask has {n} pixels, need {min_px}"))
                    break
                items.append(_Item(info, k, m, box))
        return items, label

    def _components(self, mask: np.ndarray) -> list[tuple[np.ndarray, int | None, tuple[int, int, int, int] | None]]:
        """Connected components of ``mask``, largest first, each as ``(mask, pixels, box)``
        (labelled inside the mask's bounding box only: the same components in the same order, at
        a fraction of the full-frame cost; ``pixels`` None = not counted)."""
        mode = self.config.instances
        box = mask_box(mask)
        if mode == "class" or box is None:
            return [(mask, None, box)]
        r0, r1, c0, c1 = box
        n, cc, stats, _ = cv2.connectedComponentsWithStats(mask[r0:r1, c0:c1].astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        order = np.argsort(-areas, kind="stable") + 1
        if mode == "largest":
            order = order[:1]
        elif mode == "best":
            share = areas[order[0] - 1] * self.config.candidate_share
            order = [k for k in order[: self.config.candidates] if areas[k - 1] >= share]
        out = []
        for k in order:
            component = np.zeros(mask.shape, bool)
            component[r0:r1, c0:c1] = cc == k
            top, left = r0 + int(stats[k, cv2.CC_STAT_TOP]), c0 + int(stats[k, cv2.CC_STAT_LEFT])
            tight = (top, top + int(stats[k, cv2.CC_STAT_HEIGHT]), left, left + int(stats[k, cv2.CC_STAT_WIDTH]))
            out.append((component, int(stats[k, cv2.CC_STAT_AREA]), tight))
        return out

    # stage 3 ---------------------------------------------------------------------------------

    def _instance_rng(self, item: _Item) -> np.random.Generator:
        if self.config.seed is None:
            return self._rng
        return np.random.default_rng([int(self.config.seed), int(item.info.class_id), int(item.instance)])

    def _preprocess(self, frame: Frame, items: list[_Item], skipped: list) -> list[_Item]:
        ready = []
        num_objects = getattr(self.estimator, "num_objects", None)
        for item in items:
            if num_objects is not None and not 0 <= item.info.index < num_objects and self.config.icp != "only":
                why = f"network index {item.info.index} outside the estimator's {num_objects} objects"
                skipped.append((item.info.class_id, why))
                continue
            try:
                item.prep = prepare_instance(
                    frame.rgb, frame.depth_m, frame.K, item.mask, box=item.box,
                    num_points=self.num_points, rng=self._instance_rng(item),
                    min_points=self.config.min_points, step=self.config.crop_step,
                )  # fmt: skip
            except InstanceSkipped as e:
                skipped.append((item.info.class_id, str(e)))
                continue
            ready.append(item)
        return ready

    # stage 4 + 5: batched ----------------------------------------------------------------------

    def _autocast(self):
        enabled = bool(self.config.fp16 and self.device.type == "cuda")
        # no cast cache: CUDA graph capture needs it off, and each call re-enters autocast anyway
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=enabled, cache_enabled=False)

    def _tensors(self, items: list[_Item]) -> tuple[torch.Tensor, torch.Tensor]:
        points = torch.from_numpy(np.stack([it.prep.points for it in items])).to(self.device)
        obj = torch.tensor([it.info.index for it in items], dtype=torch.int64, device=self.device)
        return points, obj

    def _embed_batched(self, items: list[_Item]) -> torch.Tensor:
        """``emb [B,32,N]`` in item order; items of one crop size must be adjacent: the colour CNN
        takes each such group in one call."""
        parts = []
        for _, group in itertools.groupby(items, key=lambda it: it.prep.rgb.shape[:2]):
            group = list(group)
            crops = torch.from_numpy(np.stack([it.prep.rgb for it in group])).to(self.device)
            choose = torch.from_numpy(np.stack([it.prep.choose for it in group])).to(self.device)
            parts.extend(self._embed_net(crops, choose))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _embed(self, crops: torch.Tensor, choose: torch.Tensor) -> tuple[torch.Tensor]:
        """The colour CNN on uint8 RGB crops ``[b,H,W,3]`` of one size: ``(emb [b,32,N] float32,)``."""
        img = normalize_image(crops, self._est_norm)
        with self._autocast():
            return (self.estimator.embed(img, choose).float(),)

    def _head(self, points, emb, obj) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The most confident hypothesis per instance: ``R [B,3,3]``, ``t [B,3]``, ``conf [B]`` (float32)."""
        with self._autocast():
            if self.config.fast_head:
                quat, t, conf, _ = self.estimator.forward_best(points, emb, obj, rows=self._rows)
            else:
                out = self.estimator.forward_head(points, emb, obj)
                conf, best = out.conf[..., 0].max(dim=1)
                rows = torch.arange(points.shape[0], device=points.device)
                quat, t = out.quat[rows, best], points[rows, best] + out.trans[rows, best]
        return geometry.quat_to_matrix_torch(quat.float()), t.float(), conf.float()

    def _estimate_batched(self, items: list[_Item], timer: _Timer) -> list[tuple[np.ndarray, np.ndarray, float]]:
        order = sorted(range(len(items)), key=lambda i: items[i].prep.rgb.shape[:2])  # crop-size groups adjacent
        items = [items[i] for i in order]
        points, obj = self._tensors(items)
        emb = self._embed_batched(items)
        R, t, best_conf = self._head_net(points, emb, obj)
        timer.lap("estimator")
        if self.refiner is not None and self.config.refine_iterations > 0:
            R, t = self._refine_net(points, emb, obj, R, t)
            timer.lap("refiner")
        R_np, t_np, c_np = R.double().cpu().numpy(), t.double().cpu().numpy(), best_conf.cpu().numpy()
        poses = [None] * len(items)
        for j, i in enumerate(order):
            poses[i] = (R_np[j], t_np[j], float(c_np[j]))
        return poses

    def _refine(self, points, emb, obj, R, t) -> tuple[torch.Tensor, torch.Tensor]:
        """K refiner iterations on a batch (:func:`~densefusion_ros.geometry.refine_pose_torch`).
        On point rows the colour branch, the same in every iteration, is computed once."""
        colour = self.refiner.colour_term(emb) if self._rows and self.config.refine_iterations > 1 else None
        moved = geometry.to_object_frame_torch(points, R, t)
        for _ in range(self.config.refine_iterations):
            with self._autocast():
                q2, t2 = self.refiner(moved, emb, obj, rows=self._rows, colour=colour)
            R, t, moved = geometry.refine_pose_torch(points, R, t, q2, t2)
        return R, t

    # stage 4 + 5: published per-object loop --------------------------------------------------

    def _estimate_loop(self, items: list[_Item], timer: _Timer) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """``tools/eval_ycb.py``: batch 1; the refined pose is composed in float64."""
        poses = []
        for it in items:
            img = normalize_image(it.prep.rgb[None], self._est_norm, device=self.device)
            points = torch.from_numpy(it.prep.points[None]).to(self.device)
            choose = torch.from_numpy(it.prep.choose[None]).to(self.device)
            obj = torch.tensor([it.info.index], dtype=torch.int64, device=self.device)
            with self._autocast():
                pred_r, pred_t, pred_c, emb = self.estimator(img, points, choose, obj)
            how_max, which_max = torch.max(pred_c.float().view(1, -1), 1)
            w = int(which_max[0])
            my_r = pred_r[0, w].float().cpu().numpy().astype(np.float64)
            my_t = (points[0, w] + pred_t[0, w].float()).cpu().numpy().astype(np.float64)
            timer.lap("estimator")
            my_R = geometry.quat_to_matrix(my_r)
            if self.refiner is not None:
                R = torch.from_numpy(my_R[None]).to(self.device)
                T = torch.from_numpy(my_t[None]).to(self.device)
                moved = geometry.to_object_frame_torch(points, R.float(), T.float())
                for _ in range(self.config.refine_iterations):
                    with self._autocast():
                        q2, t2 = self.refiner(moved, emb, obj)
                    R, T, moved = geometry.refine_pose_torch(points, R, T, q2, t2)
                my_R, my_t = R[0].cpu().numpy(), T[0].cpu().numpy()
                timer.lap("refiner")
            poses.append((my_R, my_t, float(how_max[0])))
        return poses

    # stage 6 and results -----------------------------------------------------------------------

    def _threshold(self, items, poses, skipped):
        thr = self.config.score_threshold
        if thr <= 0 or self.config.icp == "only":
            return items, poses
        keep_items, keep_poses = [], []
        for it, pose in zip(items, poses):
            if pose[2] < thr:
                skipped.append((it.info.class_id, f"confidence {pose[2]:.3f} below {thr}"))
            else:
                keep_items.append(it)
                keep_poses.append(pose)
        return keep_items, keep_poses

    def _icp(self, frame: Frame, items: list[_Item], poses: list, timer: _Timer) -> list:
        out = []
        opts = self.config.icp_options
        batched = []  # (position, VerifyInput) for the device's batched verification
        for i, (it, (R, t, c)) in enumerate(zip(items, poses)):
            if opts.observed_points > 0:
                observed = observed_points(frame.depth_m, frame.K, it.mask, it.prep.box, opts.observed_points, self._instance_rng(it))
            else:
                observed = it.prep.distinct_points
            try:
                model = it.info.sample_points(opts.model_points)
            except Exception as e:  # no usable mesh: keep the network pose
                log.warning("ICP skipped for %s: %s", it.info.name, e)
                out.append(None)
                continue
            if self.config.icp == "only":
                res = icp_from_centroid(observed, model, opts)
                poses[i] = (res.R, res.t, res.fitness)
            elif self.config.icp == "verify" and opts.verify_backend == "torch":
                batched.append((i, VerifyInput(self.model_geometry(it.info), observed, R, t, slot=len(batched))))
                res = None  # filled in below, all instances at once
            elif self.config.icp == "verify":
                res = refine_with_hypotheses(observed, model, R, t, frame.depth_m, frame.K, it.mask, opts)
                poses[i] = (res.R, res.t, c)
            else:
                res = refine_pose(observed, model, R, t, opts)
                poses[i] = (res.R, res.t, c)
            out.append(res)
        if batched:
            masks = [items[i].mask for i, _ in batched]
            plane = support_plane(frame.depth_m, frame.K, exclude=np.logical_or.reduce(masks)) if opts.verify_support_plane else None
            evidence = DepthEvidence.build(frame.depth_m, frame.K, masks, self.device, plane=plane)
            for (i, _), res in zip(batched, verify_instances([x for _, x in batched], evidence, opts)):
                out[i] = res
                poses[i] = (res.R, res.t, poses[i][2])
        timer.lap("icp")
        return out

    def model_geometry(self, info: ObjectInfo) -> ModelGeometry:
        """``info``'s model points, normals and nearest-point lookup on the pipeline's device
        (:class:`~densefusion_ros.verify.ModelGeometry`), built at first use and kept."""
        opts = self.config.icp_options
        key = (info.name, opts.model_points, opts.max_distance)
        if key not in self._geometry:
            self._geometry[key] = ModelGeometry.build(info.sample_points(opts.model_points), opts.max_distance, self.device)
        return self._geometry[key]

    def _keep_best(self, frame: Frame, items: list[_Item], poses: list, icp_info: list, skipped: list):
        """``instances="best"``: per class, the component whose pose scores highest against the
        depth image (:func:`~densefusion_ros.icp.pose_score`); the others go to ``skipped``."""
        by_class: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by_class.setdefault(it.info.class_id, []).append(i)
        keep = []
        for cid, idx in by_class.items():
            best = idx[0]
            if len(idx) > 1:
                info = items[idx[0]].info
                try:
                    model = info.sample_points(self.config.icp_options.model_points)
                except Exception as e:  # no usable mesh: keep the largest component
                    log.warning("instances='best' keeps the largest component of %s: %s", info.name, e)
                    model = None
                if model is not None:
                    opts = self.config.icp_options
                    scores = [pose_score(model, poses[i][0], poses[i][1], frame.depth_m, frame.K, items[i].mask, opts) for i in idx]
                    best = idx[int(np.argmax(scores))]
                    top = max(scores)
                    for i, score in zip(idx, scores):
                        if i != best:
                            skipped.append((cid, f"component {items[i].instance} scored {score:.2f} against the depth, below {top:.2f}"))
            items[best].instance = 0
            keep.append(best)
        keep.sort()
        return [items[i] for i in keep], [poses[i] for i in keep], [icp_info[i] for i in keep]

    def _depth_checked(self, frame: Frame, items: list[_Item], poses: list, icp_info: list, skipped: list):
        """Without the verified poses that the depth contradicts (:class:`~densefusion_ros.icp.IcpResult`'s
        ``violating`` above ``icp_options.verify_max_violation``, or its ``seen_violating`` above
        ``icp_options.verify_max_seen_violation``), that verification did not accept
        (no start reached ``icp_options.min_fitness`` on the observed points: the pose is the
        network's own, or a hypothesis that the final ICP could not fit) or that lie mostly outside
        the image (less than ``icp_options.verify_min_in_view`` inside it): no pose is better than a
        wrong one."""
        opts = self.config.icp_options
        limit = opts.verify_max_violation
        verified = self.config.icp == "verify"
        keep = []
        for k, (it, pose, icp) in enumerate(zip(items, poses, icp_info)):
            violating = getattr(icp, "violating", None)
            if violating is not None and violating > limit:
                skipped.append((it.info.class_id, f"verified pose of {it.info.name} fails the depth check: {violating:.0%} of the model "
                                                  f"in front of the measured depth or below the table (at most {limit:.0%})"))  # fmt: skip
            elif (seen := getattr(icp, "seen_violating", None)) is not None and not seen <= opts.verify_max_seen_violation:
                skipped.append((it.info.class_id, f"verified pose of {it.info.name} fails the depth check: {seen:.0%} of the model "
                                                  f"points the camera would see are in front of the measured depth (at most "
                                                  f"{opts.verify_max_seen_violation:.0%})"))  # fmt: skip
            elif verified and icp is not None and not icp.accepted:
                skipped.append((it.info.class_id, f"verification found no pose of {it.info.name} that fits its observed points: "
                                                  f"ICP fitness {icp.fitness:.0%} (at least {opts.min_fitness:.0%})"))  # fmt: skip
            elif verified and icp is not None and (share := self.share_in_view(frame, it.info, *pose[:2])) < opts.verify_min_in_view:
                skipped.append((it.info.class_id, f"verified pose of {it.info.name} lies mostly outside the image: {share:.0%} of the "
                                                  f"model inside it (at least {opts.verify_min_in_view:.0%}, verify_min_in_view)"))  # fmt: skip
            else:
                keep.append(k)
        return [items[k] for k in keep], [poses[k] for k in keep], [icp_info[k] for k in keep]

    def share_in_view(self, frame: Frame, info: ObjectInfo, R: np.ndarray, t: np.ndarray) -> float:
        """The share of ``info``'s model points (those of :meth:`model_geometry`, from the catalog's
        host-side cache: no device copy), posed by ``R (3, 3)`` and ``t (3,)`` (metres, camera
        frame), that project inside ``frame``'s image in front of the camera
        (:func:`~densefusion_ros.geometry.share_in_image`)."""
        points = info.sample_points(self.config.icp_options.model_points)
        R, t = np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3)
        return geometry.share_in_image(points, R, t, np.asarray(frame.K, np.float64), frame.depth_m.shape)

    def _result(self, it: _Item, pose, icp) -> InstanceResult:
        R, t, conf = pose
        R = np.asarray(R, np.float64)
        t = np.asarray(t, np.float64).reshape(3)
        try:
            covariance = pose_covariance(self.model_geometry(it.info), it.prep.distinct_points, R, t)
        except Exception as e:  # noqa: BLE001 - no usable mesh: the pose goes out without a covariance
            log.warning("no covariance for %s: %s", it.info.name, e)
            covariance = None
        return InstanceResult(
            name=it.info.name,
            class_id=int(it.info.class_id),
            index=int(it.info.index),
            instance=int(it.instance),
            R=R,
            t=t,
            quaternion_wxyz=geometry.matrix_to_quat(R),
            confidence=float(conf),
            box=it.prep.box.as_tuple(),
            num_points=int(it.prep.num_valid),
            mask=it.mask if self.config.keep_masks else None,
            icp_fitness=None if icp is None else float(icp.fitness),
            icp_rmse=None if icp is None else float(icp.rmse),
            covariance=covariance,
        )
