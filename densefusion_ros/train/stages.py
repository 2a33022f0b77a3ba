"""The three training stages: what each trains, on which samples, with which step and test.

:class:`~densefusion_ros.train.trainer.Trainer` runs the loop, the schedule, DDP and the
checkpoints; a :class:`Stage` supplies the stage-specific parts:

* :class:`SegmenterStage`: the segmenter on whole frames, per-pixel cross-entropy; its test
  "distance" is the mean cross-entropy (the published ``test_cost``), pixel error and mean IoU
  beside it.
* :class:`EstimatorStage`: the estimator on instance crops, the published per-pixel loss; test:
  mean ADD(-S) of the most confident hypothesis. The only stage with the ``--decay-margin``
  decay, and with ``--auto-refine`` it hands over to the refiner stage.
* :class:`RefinerStage`: the refiner behind the frozen estimator, ``--iterations`` steps per
  sample (each pose from :func:`densefusion_ros.geometry.refine_pose_torch`), one backward per
  step as published; test: mean ADD(-S) after those steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from densefusion_ros.catalog import Catalog
from densefusion_ros.geometry import refine_pose_torch, to_object_frame_torch
from densefusion_ros.models.checkpoint import load_estimator, load_refiner, load_segmenter, read_metadata, unwrap_model
from densefusion_ros.models.estimator import build_estimator
from densefusion_ros.models.metadata import metadata_of
from densefusion_ros.models.refiner import build_refiner
from densefusion_ros.models.segmentation import build_segmenter
from densefusion_ros.train.config import TrainConfig
from densefusion_ros.train.dataset import Augment, PoseDataset, SegmentationDataset, collate_pose, collate_segmentation
from densefusion_ros.train.distributed import DistInfo
from densefusion_ros.train.losses import EstimatorLossOutput, estimator_loss, refiner_loss
from densefusion_ros.train.state import TrainState

__all__ = ["EstimatorStage", "RefinerStage", "Run", "SegmenterStage", "Stage", "make_stage"]

Sums = Callable[[Any], list[float]]


@dataclass
class Run:
    """What the stages share with the trainer: settings, objects, device, ranks, schedule, normalisation."""

    config: TrainConfig
    catalog: Catalog
    device: torch.device
    di: DistInfo
    state: TrainState
    normalization: dict[str, Any]

    @property
    def num_objects(self) -> int:
        return self.catalog.num_objects

    def adopt_normalization(self, model: nn.Module) -> None:
        """Train on with the normalisation a loaded checkpoint was trained with (if it says)."""
        self.normalization = dict(metadata_of(model).normalization or self.normalization)


class Stage(ABC):
    """One training stage. ``model`` is the trained network (DDP-wrapped by the trainer when distributed).

    Test results come in two steps so that DDP ranks can add theirs up: :meth:`test_sums` gives
    ``num_test_sums`` running sums per batch group, :meth:`test_result` turns their totals into
    ``{"test_dis": ..., ...}``.
    """

    name: ClassVar[str]
    unit: ClassVar[str] = "instances"  # what one sample is, for the log
    decays: ClassVar[bool] = False  # the published lr / w decay at --decay-margin applies
    collate: Callable
    baseline_sums: Sums | None = None  # a test to run once before training (the refiner's estimator alone)

    def __init__(self, run: Run, model: nn.Module) -> None:
        self.run = run
        self.model = model.to(run.device)

    def modules(self) -> list[nn.Module]:
        """Every network the stage runs (put in eval mode for the test)."""
        return [self.model]

    def train_mode(self) -> None:
        self.model.train()

    def _sync(self, final: bool):
        """DDP all-reduces gradients once per step: in the step's final backward, not before."""
        return self.model.no_sync() if (self.run.di.enabled and not final) else nullcontext()

    def checkpoint_fields(self) -> dict[str, Any]:
        """Stage-specific arguments of :func:`~densefusion_ros.models.checkpoint.save_checkpoint`."""
        return {}

    def training_fields(self) -> dict[str, Any]:
        """Stage-specific entries of the checkpoint's ``training`` record."""
        return {"refine_iterations": None}

    def successor(self) -> Stage | None:
        """The stage to switch to after a test (``--auto-refine``), else ``None``."""
        return None

    num_test_sums: int  # how many running sums test_sums gives

    @abstractmethod
    def datasets(self, train_bop, test_bop) -> tuple[Any, Any]:
        """The training and test samples of two BOP splits."""

    @abstractmethod
    def sizes(self, dataset) -> list[tuple[int, int]]:
        """The size of each sample, by which batches are grouped."""

    @abstractmethod
    def train_group(self, g, *, weight: float, final: bool) -> tuple[float, float]:
        """Forward and backward of one same-size group, loss scaled by ``weight``; ``final``: the
        step's last backward. Returns (loss, mean distance) for the log."""

    @abstractmethod
    def test_sums(self, g) -> list[float]:
        """The running test sums of one group."""

    @abstractmethod
    def test_result(self, sums: list[float]) -> dict[str, float]:
        """``{"test_dis": ..., ...}`` from the sums of the whole test split."""


class SegmenterStage(Stage):
    """The segmenter on whole frames (``--seg-scale``), labels = catalog index + 1."""

    name = "segmenter"
    unit = "frames"
    collate = staticmethod(collate_segmentation)

    @classmethod
    def from_config(cls, run: Run, resumed: bool) -> SegmenterStage:
        cfg, classes = run.config, run.num_objects + 1
        if cfg.resume:
            model = load_segmenter(cfg.resume, num_classes=classes)
            run.adopt_normalization(model)
        else:
            model = build_segmenter(num_classes=classes, arch=cfg.seg_arch)
        return cls(run, model)

    @property
    def num_test_sums(self) -> int:  # pixel errors, pixels, cross-entropy, intersections, unions
        return 3 + 2 * (self.run.num_objects + 1)

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"num_points": None, "input_scale": self.run.config.seg_scale}

    def datasets(self, train_bop, test_bop) -> tuple[SegmentationDataset, SegmentationDataset]:
        run, cfg = self.run, self.run.config
        common = dict(normalization=run.normalization, scale=cfg.seg_scale)
        train = SegmentationDataset(train_bop, run.catalog, augment=True, jitter=_jitter(cfg), seed=cfg.seed, **common)
        test = SegmentationDataset(test_bop, run.catalog, augment=False, seed=cfg.seed + 1, max_frames=cfg.test_samples or None, **common)
        return train, test

    def sizes(self, dataset) -> list[tuple[int, int]]:
        return [(0, 0)] * len(dataset)  # collate_segmentation groups by frame size

    def _batch(self, g) -> tuple[torch.Tensor, torch.Tensor]:
        return g[0].to(self.run.device), g[1].to(self.run.device)

    def train_group(self, g, *, weight: float, final: bool) -> tuple[float, float]:
        img, label = self._batch(g)
        with self._sync(final):
            logits = self.model(img)
            loss = nn.functional.cross_entropy(logits, label)
            (loss * weight).backward()
        return float(loss.detach()), float((logits.detach().argmax(1) != label).float().mean())

    def test_sums(self, g) -> list[float]:
        img, label = self._batch(g)
        logits = unwrap_model(self.model)(img)
        pred = logits.argmax(1)
        classes = range(self.run.num_objects + 1)
        inter = [float(((pred == c) & (label == c)).sum()) for c in classes]
        union = [float(((pred == c) | (label == c)).sum()) for c in classes]
        ce = float(nn.functional.cross_entropy(logits, label, reduction="sum"))
        return [float((pred != label).float().sum()), float(label.numel()), ce, *inter, *union]

    def test_result(self, sums: list[float]) -> dict[str, float]:
        n, k = max(sums[1], 1.0), self.run.num_objects + 1
        inter, union = np.array(sums[3 : 3 + k]), np.array(sums[3 + k : 3 + 2 * k])
        present = union > 0
        miou = float((inter[present] / union[present]).mean()) if present.any() else 0.0
        # the selection criterion is the mean cross-entropy (published: test cost)
        return {"test_dis": sums[2] / n, "pixel_error": sums[0] / n, "miou": miou}


class _PoseStage(Stage):
    """What the estimator and refiner stages share: instance samples and the estimator's forward."""

    collate = staticmethod(collate_pose)
    num_test_sums = 2  # distances, instances
    estimator: nn.Module

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"num_points": self.run.config.num_points, "input_scale": None}

    def datasets(self, train_bop, test_bop) -> tuple[PoseDataset, PoseDataset]:
        run, cfg = self.run, self.run.config
        jitter = _jitter(cfg)
        aug = Augment(
            jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue,
            noise_trans=cfg.noise_trans, occluder_prob=cfg.occluder_prob, mask_noise_prob=cfg.mask_noise_prob,
        )  # fmt: skip
        common = dict(num_points=cfg.num_points, num_model_points=cfg.num_model_points, normalization=run.normalization,
                      cache_crops=cfg.cache_crops)  # fmt: skip
        train = PoseDataset(train_bop, run.catalog, augment=aug, seed=cfg.seed, **common)
        test = PoseDataset(test_bop, run.catalog, augment=Augment.none(), seed=cfg.seed + 1, max_instances=cfg.test_samples or None,
                           **common)  # fmt: skip
        return train, test

    def sizes(self, dataset) -> list[tuple[int, int]]:
        return dataset.crop_sizes

    def _batch(self, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.run.device, non_blocking=True) for k, v in g.items()}

    def estimate(self, b: dict[str, torch.Tensor], *, raw: bool = False) -> tuple[EstimatorLossOutput, torch.Tensor]:
        """Estimator forward and loss; ``raw`` bypasses the DDP wrapper (evaluation)."""
        est = unwrap_model(self.estimator) if raw else self.estimator
        pred_r, pred_t, pred_c, emb = est(b["img"], b["points"], b["choose"], b["obj"])
        out = estimator_loss(pred_r, pred_t, pred_c, b["target"], b["model_points"], b["points"], b["symmetric"], self.run.state.w)
        return out, emb

    def estimator_sums(self, g) -> list[float]:
        """Test sums of the estimator's most confident hypothesis."""
        dis = self.estimate(self._batch(g), raw=True)[0].dis
        return [float(dis.sum()), float(dis.numel())]

    def test_result(self, sums: list[float]) -> dict[str, float]:
        return {"test_dis": sums[0] / max(sums[1], 1.0), "test_samples": sums[1]}


class EstimatorStage(_PoseStage):
    """The estimator, from scratch, from ``--resume`` or fine-tuned from ``--init-estimator``."""

    name = "estimator"
    decays = True

    @classmethod
    def from_config(cls, run: Run, resumed: bool) -> EstimatorStage:
        cfg = run.config
        if cfg.resume or cfg.init_estimator:
            model = load_estimator(cfg.resume or cfg.init_estimator, num_objects=run.num_objects)
            run.adopt_normalization(model)
            if not cfg.resume:
                run.state.estimator_checkpoint = str(cfg.init_estimator)  # recorded as "initialised from"
        else:
            model = build_estimator(num_objects=run.num_objects, backbone=cfg.backbone)
        return cls(run, model)

    @property
    def estimator(self) -> nn.Module:
        return self.model

    def train_group(self, g, *, weight: float, final: bool) -> tuple[float, float]:
        b = self._batch(g)
        with self._sync(final):
            out, _ = self.estimate(b)
            (out.loss * weight).backward()
        return float(out.loss.detach()), float(out.dis.mean())

    def test_sums(self, g) -> list[float]:
        return self.estimator_sums(g)

    def successor(self) -> RefinerStage | None:
        """``--auto-refine``: the refiner stage once the best test distance is below ``--refine-margin``."""
        cfg, st = self.run.config, self.run.state
        if not (cfg.auto_refine and st.best_test < cfg.refine_margin):
            return None
        return RefinerStage(self.run, unwrap_model(self.model), build_refiner(num_objects=self.run.num_objects))


class RefinerStage(_PoseStage):
    """The refiner behind a frozen estimator."""

    name = "refiner"

    def __init__(self, run: Run, estimator: nn.Module, refiner: nn.Module) -> None:
        super().__init__(run, refiner)
        self.estimator = estimator.to(run.device).eval()
        for p in self.estimator.parameters():
            p.requires_grad_(False)
        self.baseline_sums = self.estimator_sums

    @classmethod
    def from_config(cls, run: Run, resumed: bool) -> RefinerStage:
        """The estimator from ``--init-estimator``, else the one the run (or ``--resume``'s file) names."""
        cfg, st = run.config, run.state
        est_path = cfg.init_estimator or st.estimator_checkpoint
        if est_path is None and cfg.resume:
            est_path = read_metadata(cfg.resume).training.get("estimator_checkpoint")
        if est_path is None:
            raise SystemExit("the refiner stage needs a trained estimator: --init-estimator CKPT")
        estimator = load_estimator(est_path, num_objects=run.num_objects)
        run.adopt_normalization(estimator)
        st.estimator_checkpoint = str(est_path)
        refiner = load_refiner(cfg.resume, num_objects=run.num_objects) if cfg.resume else build_refiner(num_objects=run.num_objects)
        if not resumed:
            st.enter_refiner(cfg)
        return cls(run, estimator, refiner)

    def modules(self) -> list[nn.Module]:
        return [self.estimator, self.model]

    def train_mode(self) -> None:
        self.model.train()
        self.estimator.eval()

    def training_fields(self) -> dict[str, Any]:
        return {"refine_iterations": self.run.config.iterations}

    def _start(self, b: dict[str, torch.Tensor]):
        """The frozen estimator's best pose (R, t), the points in its frame, emb and its distance."""
        with torch.no_grad():
            out, emb = self.estimate(b, raw=True)
        return out.R, out.t, to_object_frame_torch(b["points"], out.R, out.t), emb, out.dis

    def train_group(self, g, *, weight: float, final: bool) -> tuple[float, float]:
        b = self._batch(g)
        R, t, moved, emb, dis = self._start(b)
        total, iters = 0.0, self.run.config.iterations
        for it in range(iters):
            # published: a backward after every iteration; the inputs are detached between them
            with self._sync(final and it == iters - 1):
                q_d, t_d = self.model(moved, emb, b["obj"])
                R_new, t_new, moved_new = refine_pose_torch(b["points"], R, t, q_d, t_d)
                r = refiner_loss(R_new, t_new, b["target"], b["model_points"], b["symmetric"])
                (r.loss * weight).backward()
            total += float(r.loss.detach())
            dis, R, t, moved = r.dis, R_new.detach(), t_new.detach(), moved_new.detach()
        return total, float(dis.mean())

    def test_sums(self, g) -> list[float]:
        b = self._batch(g)
        R, t, moved, emb, dis = self._start(b)
        refiner = unwrap_model(self.model)
        for _ in range(self.run.config.iterations):
            q_d, t_d = refiner(moved, emb, b["obj"])
            R, t, moved = refine_pose_torch(b["points"], R, t, q_d, t_d)
            dis = refiner_loss(R, t, b["target"], b["model_points"], b["symmetric"]).dis
        return [float(dis.sum()), float(dis.numel())]


_STAGES: dict[str, type] = {"segmenter": SegmenterStage, "estimator": EstimatorStage, "refiner": RefinerStage}


def make_stage(run: Run, resumed: bool) -> Stage:
    """The stage ``run.state.stage`` with its networks built or loaded; ``resumed``: the schedule
    came from ``--resume`` (a fresh refiner run enters the refinement schedule)."""
    return _STAGES[run.state.stage].from_config(run, resumed)


def _jitter(cfg: TrainConfig) -> Augment:
    return Augment() if cfg.jitter else Augment.none()
