"""``densefusion-ros train``: train the segmenter, the estimator or the refiner on a BOP dataset.

Usage::

    densefusion-ros train --stage estimator --dataset DATA --out runs/est --backbone compact \\
        --epochs 50 --max-minutes 40
    densefusion-ros train --stage refiner --dataset DATA --out runs/ref \\
        --init-estimator runs/est/estimator_best.pth --max-minutes 20
    densefusion-ros train --stage segmenter --dataset DATA --out runs/seg --seg-scale 0.5
    torchrun --nproc_per_node=2 -m densefusion_ros.cli train --stage estimator ...   # DDP

The published schedule (``tools/train.py``, fact sheet 5): Adam at ``--lr`` 1e-4; once the best
test distance drops below ``--decay-margin`` (0.016 m), lr and w are multiplied by
``--lr-rate`` / ``--w-rate`` (0.3) once and a fresh Adam is made; the refiner stage trains the
refiner with the estimator frozen, at the decayed lr and with ``batch_size // iterations``
samples per step. ``--auto-refine`` switches an estimator run to the refiner stage when the best
test distance drops below ``--refine-margin`` (0.013 m), as published. The test distance is the
mean ADD (ADD-S for symmetric objects) of the most confident hypothesis (after the refiner
iterations in the refiner stage) over the test split (GT masks, no augmentation); for the
segmenter it is the mean per-pixel cross-entropy (the published ``test_cost``), with the pixel
error and mean IoU logged beside it.

Batching: ``--batch-size`` samples per optimizer step; they are grouped by crop size and each
group runs as one batch, with gradients accumulated over the groups (the published code used
batches of one and accumulated 8, [ISSUE #16]). Measured with the compact backbone, 120x120 crops,
500 points, torch 2.13, on 2 CPU cores shared with other work: 1 thread, one batch of 8 vs
8 batches of 1: 3.8 vs 3.4 samples/s; 2 threads (one core busy elsewhere): 2.0 vs 0.7 samples/s.
Batching matters most on a GPU. The point-wise heads (1408->640->256->128, three of them) cost
about 20 MFLOP per point per training step and dominate, so throughput scales roughly with
1/``--num-points``. On the pybullet demo data (640x480, crops 80-240 px, 4 objects, one
symmetric), idle 2-core machine: 5.1 samples/s with 500 points and 8.0 with 250 (1 thread);
2 threads were no faster (5.1 / 7.2) and ``--workers 1`` neither (4.7 / 7.5), since the crop
cache makes loading cheap after the first epoch. ADD-S for symmetric objects adds about 0.15 s
per sample on CPU (250k nearest-neighbour queries). ``--threads`` defaults to the cores not busy
at start: oversubscribed intra-op threads were 5-10x slower than one thread.

``--max-minutes``: training stops after the first step past the limit; one test pass and the
checkpoints follow, and ``--resume`` continues inside the interrupted epoch.

Outputs in ``--out``: ``{stage}_current.pth`` (every epoch, with ``{stage}_current.state.pth``
holding the optimizer and schedule for ``--resume``), ``{stage}_best.pth`` (best test distance),
``train_log.csv`` (one row per epoch) and TensorBoard events when tensorboard is installed.
Checkpoints use :func:`densefusion_ros.models.checkpoint.save_checkpoint` and load with
``load_estimator`` / ``load_refiner`` / ``load_segmenter``.

DDP: under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set) the process group uses
nccl on CUDA and gloo on CPU, each rank takes its shard of every epoch, gradients are averaged
by DDP, the test split is sharded and reduced, and only rank 0 logs and saves.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from densefusion_ros.catalog import Catalog
from densefusion_ros.geometry import refine_pose_torch, to_object_frame_torch
from densefusion_ros.models.checkpoint import unwrap_model
from densefusion_ros.models.metadata import metadata_of
from densefusion_ros.runtime import cpu_threads, resolve_device
from densefusion_ros.train.losses import estimator_loss, refiner_loss

log = logging.getLogger("densefusion_ros.train")

STAGES = ("segmenter", "estimator", "refiner")
NORMALIZATIONS = ("imagenet", "published")


# ---------------------------------------------------------------------------------------------
# command line


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``p``."""
    p.add_argument("--stage", choices=STAGES, required=True, help="what to train")
    p.add_argument("--dataset", required=True, help="BOP dataset folder (with catalog.yaml unless --catalog)")
    p.add_argument("--catalog", default=None, help="object catalog YAML (default: DATASET/catalog.yaml)")
    p.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test", help="held-out split (falls back to the train split without augmentation)")
    p.add_argument("--backbone", default="compact", choices=("compact", "psp_resnet18"), help="estimator color backbone")
    p.add_argument("--seg-arch", default="compact", choices=("compact", "segnet"), help="segmenter architecture")
    p.add_argument("--normalization", default="imagenet", choices=NORMALIZATIONS,
                   help="image normalisation stored in the checkpoint (published = 0-255 with ImageNet mean/std)")
    p.add_argument("--epochs", type=int, default=500, help="maximum epochs (published 500)")
    p.add_argument("--epoch-samples", type=int, default=None, help="samples per epoch (default: every training instance once)")
    p.add_argument("--test-samples", type=int, default=300, help="test instances / frames per evaluation (0 = all)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-rate", type=float, default=0.3)
    p.add_argument("--w", type=float, default=0.015, help="confidence weight (published code 0.015, paper 0.01)")
    p.add_argument("--w-rate", type=float, default=0.3)
    p.add_argument("--decay-margin", type=float, default=0.016, help="m; decay lr and w once below")
    p.add_argument("--refine-margin", type=float, default=0.013, help="m; --auto-refine switches to the refiner below")
    p.add_argument("--auto-refine", action="store_true", help="estimator stage: switch to the refiner at --refine-margin")
    p.add_argument("--iterations", type=int, default=2, help="refiner iterations in training and test")
    p.add_argument("--batch-size", type=int, default=8, help="samples per optimizer step (published 8, accumulated)")
    p.add_argument("--num-points", type=int, default=500, help="points per instance N")
    p.add_argument("--num-model-points", type=int, default=500, help="model points M in the loss")
    p.add_argument("--noise-trans", type=float, default=0.03, help="m; translation noise (published 0.03)")
    p.add_argument("--occluder-prob", type=float, default=0.0, help="probability of a random occluder per sample")
    p.add_argument("--mask-noise-prob", type=float, default=0.0, help="probability of eroding / dilating the mask")
    p.add_argument("--no-jitter", action="store_true", help="no colour jitter")
    p.add_argument("--seg-scale", type=float, default=1.0, help="segmenter: resize frames by this factor")
    p.add_argument("--resume", default=None, help="checkpoint to continue from (its .state.pth restores the schedule)")
    p.add_argument(
        "--init-estimator", default=None,
        help="refiner stage: the trained estimator (frozen); estimator stage: start from these weights "
        "(fine-tuning, e.g. from a published or bundled checkpoint) with a fresh schedule",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly (test, save) after this wall time")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 = load in the training process)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: this rank's share of the cores not busy at start)")
    p.add_argument("--cache-crops", action=argparse.BooleanOptionalAction, default=True,
                   help="keep decoded crop regions in memory across epochs (in each DataLoader worker)")
    p.add_argument("--preload-crops", action="store_true",
                   help="decode every instance's crop before training (shared by forked DataLoader workers)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    trainer = Trainer(args)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m densefusion_ros.train.trainer ...`` (same options as ``densefusion-ros train``)."""
    parser = configure_parser(argparse.ArgumentParser(prog="densefusion-ros train"))
    return run(parser.parse_args(argv))


# ---------------------------------------------------------------------------------------------
# distributed helpers


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (``RANK``/``WORLD_SIZE`` set, world > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def _all_reduce_sum(values: list[float], di: DistInfo, device: torch.device) -> list[float]:
    if not di.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _any_rank(flag: bool, di: DistInfo, device: torch.device) -> bool:
    if not di.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _group_size(g) -> int:
    return int(g["obj"].shape[0]) if isinstance(g, dict) else int(g[0].shape[0])


# ---------------------------------------------------------------------------------------------
# state


@dataclass
class TrainState:
    """The schedule, saved beside each ``*_current.pth`` for ``--resume``."""

    stage: str
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current (unfinished) epoch
    samples_seen: int = 0
    lr: float = 1e-4
    w: float = 0.015
    batch_size: int = 8
    decay_started: bool = False
    best_test: float = math.inf
    last_test: float = math.inf
    estimator_test: float | None = None  # refiner stage: the estimator's own test dis
    train_time_s: float = 0.0
    estimator_checkpoint: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _resolve_device(name: str, di: DistInfo) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", di.local_rank if di.enabled else (device.index or 0))
        torch.cuda.set_device(device)
    return device


def _normalization(name: str) -> dict[str, Any]:
    from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION, PUBLISHED_NORMALIZATION

    return dict(PUBLISHED_NORMALIZATION if name == "published" else IMAGENET_NORMALIZATION)


# ---------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """One training run (see the module docstring). ``fit()`` returns the process exit code."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t_start = time.time()
        self.di = init_distributed(resolve_device(args.device).type)
        self.device = _resolve_device(args.device, self.di)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(args.threads, self.di.world_size))
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        self.out = Path(args.out)
        if self.di.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog.load(args.catalog or Path(args.dataset) / "catalog.yaml")
        self.num_objects = self.catalog.num_objects
        self.object_names = [
            self.catalog.by_index(i).name if i in {o.index for o in self.catalog} else f"unused_{i}"
            for i in range(self.num_objects)
        ]
        self.normalization = _normalization(args.normalization)
        self.estimator: nn.Module | None = None
        self.refiner: nn.Module | None = None
        self.segmenter: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.tb = None
        self._resume_blob: dict[str, Any] | None = None
        self._loaders: dict[str, DataLoader] = {}
        self.state = TrainState(stage=args.stage, lr=args.lr, w=args.w, batch_size=args.batch_size)
        self._setup_models()
        self._setup_data()
        if self.di.main:
            self._open_logs()

    # -- setup ------------------------------------------------------------------------------

    def _setup_models(self) -> None:
        from densefusion_ros.models.checkpoint import load_estimator, load_refiner, load_segmenter
        from densefusion_ros.models.estimator import build_estimator
        from densefusion_ros.models.refiner import build_refiner
        from densefusion_ros.models.segmentation import build_segmenter

        a, st = self.args, self.state
        resume_state = self._read_resume_state() if a.resume else None
        if resume_state is not None:
            self.state = st = resume_state
        stage = st.stage
        if stage == "segmenter":
            if a.resume:
                self.segmenter = load_segmenter(a.resume, num_classes=self.num_objects + 1)
                self.normalization = dict(metadata_of(self.segmenter).normalization or self.normalization)
            else:
                self.segmenter = build_segmenter(num_classes=self.num_objects + 1, arch=a.seg_arch)
        elif stage == "estimator":
            if a.resume or a.init_estimator:
                self.estimator = load_estimator(a.resume or a.init_estimator, num_objects=self.num_objects)
                self.normalization = dict(metadata_of(self.estimator).normalization or self.normalization)
                if not a.resume:
                    st.estimator_checkpoint = str(a.init_estimator)  # recorded as "initialised from"
            else:
                self.estimator = build_estimator(num_objects=self.num_objects, backbone=a.backbone)
        else:  # refiner
            est_path = a.init_estimator or st.estimator_checkpoint
            if est_path is None and a.resume:
                from densefusion_ros.models.checkpoint import read_metadata

                est_path = read_metadata(a.resume).training.get("estimator_checkpoint")
            if est_path is None:
                raise SystemExit("the refiner stage needs a trained estimator: --init-estimator CKPT")
            self.estimator = load_estimator(est_path, num_objects=self.num_objects)
            self.normalization = dict(metadata_of(self.estimator).normalization or self.normalization)
            st.estimator_checkpoint = str(est_path)
            self.refiner = load_refiner(a.resume, num_objects=self.num_objects) if a.resume else build_refiner(num_objects=self.num_objects)
            if resume_state is None:
                self._enter_refine_schedule()
        for m in (self.estimator, self.refiner, self.segmenter):
            if m is not None:
                m.to(self.device)
        self._train_model().train()
        if stage == "refiner":
            self._freeze_estimator()
        self._wrap_ddp()
        self.optimizer = torch.optim.Adam(self._train_model().parameters(), lr=st.lr)
        if resume_state is not None:
            sd = self._resume_blob.get("optimizer") if self._resume_blob else None
            if sd is not None:
                self.optimizer.load_state_dict(sd)
                for g in self.optimizer.param_groups:
                    g["lr"] = st.lr

    def _read_resume_state(self) -> TrainState | None:
        self._resume_blob = None
        path = Path(self.args.resume)
        side = path.with_name(path.stem + ".state.pth")
        if side.is_file():
            blob = torch.load(side, map_location="cpu", weights_only=True)
            self._resume_blob = blob
            st = TrainState(**json.loads(blob["state"]))
        else:  # e.g. a *_best.pth: the schedule from its metadata, a fresh optimizer
            from densefusion_ros.models.checkpoint import read_metadata

            log.warning("no %s beside the checkpoint: fresh optimizer, schedule from its metadata", side.name)
            meta = read_metadata(path)
            tr, mt = meta.training, meta.metrics
            if not tr.get("stage"):
                return None
            st = TrainState(
                stage=tr["stage"], epoch=int(tr.get("epochs") or 0), samples_seen=int(tr.get("samples_seen") or 0),
                lr=float(tr.get("lr", self.args.lr)), w=float(tr.get("w", self.args.w)),
                batch_size=int(tr.get("batch_size") or self.args.batch_size), decay_started=bool(tr.get("decay_started")),
                best_test=float(mt["best_test_dis"]) if mt.get("best_test_dis") is not None else math.inf,
                estimator_test=mt.get("estimator_test_dis"), train_time_s=float(tr.get("train_time_s") or 0.0),
                estimator_checkpoint=tr.get("estimator_checkpoint"),
            )  # fmt: skip
        if st.stage != self.args.stage and not (self.args.stage == "estimator" and st.stage == "refiner"):
            raise SystemExit(f"--resume {path} is a {st.stage} run, not {self.args.stage}")
        return st

    def _enter_refine_schedule(self) -> None:
        """The published switch to refinement: decayed lr/w, batch size divided by the iterations."""
        st, a = self.state, self.args
        st.stage = "refiner"
        if not st.decay_started:
            st.decay_started = True
            st.lr *= a.lr_rate
            st.w *= a.w_rate
        st.batch_size = max(1, a.batch_size // max(1, a.iterations))
        st.best_test = math.inf

    def _freeze_estimator(self) -> None:
        assert self.estimator is not None
        self.estimator.eval()
        for p in self.estimator.parameters():
            p.requires_grad_(False)

    def _train_model(self) -> nn.Module:
        stage = self.state.stage
        m = {"segmenter": self.segmenter, "estimator": self.estimator, "refiner": self.refiner}[stage]
        assert m is not None
        return m

    def _wrap_ddp(self) -> None:
        if not self.di.enabled:
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        stage = self.state.stage
        model = unwrap_model(self._train_model())
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        setattr(self, stage, wrapped)

    def _setup_data(self) -> None:
        from densefusion_ros.data.bop import BopDataset
        from densefusion_ros.train.dataset import Augment, PoseDataset, SegmentationDataset

        a = self.args
        train_bop = BopDataset(a.dataset, a.train_split, load_masks=False)
        try:
            test_bop = BopDataset(a.dataset, a.test_split, load_masks=False)
        except FileNotFoundError:
            log.warning("no %r split in %s: testing on the train split without augmentation", a.test_split, a.dataset)
            test_bop = train_bop
        jitter = Augment.none() if a.no_jitter else Augment()
        test_max = a.test_samples or None
        if self.state.stage == "segmenter":
            self.train_set = SegmentationDataset(
                train_bop, self.catalog, normalization=self.normalization, scale=a.seg_scale, augment=True,
                jitter=jitter, seed=a.seed,
            )  # fmt: skip
            self.test_set = SegmentationDataset(
                test_bop, self.catalog, normalization=self.normalization, scale=a.seg_scale, augment=False,
                seed=a.seed + 1, max_frames=test_max,
            )  # fmt: skip
            self.train_sizes = None
        else:
            aug = Augment(
                jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue,
                noise_trans=a.noise_trans, occluder_prob=a.occluder_prob, mask_noise_prob=a.mask_noise_prob,
            )  # fmt: skip
            common = dict(
                num_points=a.num_points, num_model_points=a.num_model_points, normalization=self.normalization,
                cache_crops=a.cache_crops,
            )  # fmt: skip
            self.train_set = PoseDataset(train_bop, self.catalog, augment=aug, seed=a.seed, **common)
            self.test_set = PoseDataset(
                test_bop, self.catalog, augment=Augment.none(), seed=a.seed + 1, max_instances=test_max, **common
            )
            self.train_sizes = self.train_set.crop_sizes
            if a.preload_crops and a.cache_crops:
                t0 = time.time()
                for ds in (self.train_set, self.test_set):
                    ds.preload(threads=max(2, os.cpu_count() or 2))
                if self.di.main:
                    log.info("preloaded %d crops in %.1f s", len(self.train_set) + len(self.test_set), time.time() - t0)
        if self.di.main:
            log.info(
                "stage %s: %d training and %d test %s, %d objects, device %s, %d thread(s), world size %d",
                self.state.stage, len(self.train_set), len(self.test_set),
                "frames" if self.state.stage == "segmenter" else "instances",
                self.num_objects, self.device, torch.get_num_threads(), self.di.world_size,
            )  # fmt: skip

    def _loader(self, dataset, *, train: bool, epoch: int, start_batch: int = 0) -> DataLoader:
        """The DataLoader of ``dataset``, made once (workers persist, keeping their crop caches)."""
        from densefusion_ros.train.dataset import SizeGroupedBatchSampler, collate_pose, collate_segmentation

        a, st = self.args, self.state
        key = "train" if train else "test"
        if key not in self._loaders:
            if st.stage == "segmenter":
                sizes = [(0, 0)] * len(dataset)  # collate_segmentation still groups by frame size
                collate = collate_segmentation
            else:
                sizes = dataset.crop_sizes
                collate = collate_pose
            sampler = SizeGroupedBatchSampler(
                sizes, st.batch_size, samples_per_epoch=(a.epoch_samples if train else None), shuffle=train,
                seed=a.seed, rank=self.di.rank, world_size=self.di.world_size,
            )  # fmt: skip
            self._loaders[key] = DataLoader(
                dataset, batch_sampler=sampler, collate_fn=collate, num_workers=a.workers,
                persistent_workers=a.workers > 0, pin_memory=self.device.type == "cuda",
            )  # fmt: skip
        loader = self._loaders[key]
        loader.batch_sampler.batch_size = st.batch_size if train else max(8, st.batch_size)
        loader.batch_sampler.set_epoch(epoch, start_batch)
        return loader

    def _open_logs(self) -> None:
        self.csv_path = self.out / "train_log.csv"
        self.csv_fields = [
            "time", "stage", "epoch", "samples", "train_loss", "train_dis", "test_dis", "best_test",
            "lr", "w", "batch_size", "samples_per_s", "elapsed_s",
        ]  # fmt: skip
        if not self.csv_path.is_file():
            with self.csv_path.open("w", newline="") as f:
                csv.writer(f).writerow(self.csv_fields)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            self.tb = None

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.di.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # -- steps ------------------------------------------------------------------------------

    def _to(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _estimator_step(self, b: dict[str, torch.Tensor], *, raw: bool = False):
        """Estimator forward and loss; ``raw`` bypasses the DDP wrapper (evaluation)."""
        est = unwrap_model(self.estimator) if raw else self.estimator
        pred_r, pred_t, pred_c, emb = est(b["img"], b["points"], b["choose"], b["obj"])
        out = estimator_loss(pred_r, pred_t, pred_c, b["target"], b["model_points"], b["points"], b["symmetric"], self.state.w)
        return out, emb

    def _refine_start(self, b: dict[str, torch.Tensor]):
        """The frozen estimator's best pose (R, t), the points in its frame, emb and its dis."""
        with torch.no_grad():
            out, emb = self._estimator_step(b, raw=True)
        return out.R, out.t, to_object_frame_torch(b["points"], out.R, out.t), emb, out.dis

    def _train_epoch(self, epoch: int, deadline: float | None) -> tuple[dict[str, float], bool]:
        """One epoch; returns (mean stats, stopped early)."""
        st = self.state
        model = self._train_model()
        model.train()
        if st.stage == "refiner":
            self.estimator.eval()
        loader = self._loader(self.train_set, train=True, epoch=epoch, start_batch=st.batches_done)
        bar = None
        if self.di.main and not self.args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(loader), desc=f"{st.stage} epoch {epoch + 1}", unit="batch", leave=False, dynamic_ncols=True)
        sums = {"loss": 0.0, "dis": 0.0, "n": 0.0}
        t0 = time.time()
        n_local = 0
        stopped = False
        for groups in loader:
            sizes = [_group_size(g) for g in groups]
            n_batch = sum(sizes)
            self.optimizer.zero_grad(set_to_none=True)
            for gi, (g, n) in enumerate(zip(groups, sizes)):
                # DDP: gradients are all-reduced once per step, in the last group's backward
                loss, dis = self._train_group(g, weight=n / n_batch, sync=gi == len(groups) - 1)
                sums["loss"] += loss * n
                sums["dis"] += dis * n
                sums["n"] += n
            self.optimizer.step()
            n_local += n_batch
            st.batches_done += 1
            st.samples_seen += n_batch * self.di.world_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / max(sums['n'], 1):.4f}", dis=f"{sums['dis'] / max(sums['n'], 1):.4f}")
            if deadline is not None and _any_rank(time.time() >= deadline, self.di, self.device):
                stopped = True
                break
        if bar is not None:
            bar.close()
        elapsed = time.time() - t0
        st.train_time_s += elapsed
        tot = _all_reduce_sum([sums["loss"], sums["dis"], sums["n"]], self.di, self.device)
        n = max(tot[2], 1.0)
        return {"train_loss": tot[0] / n, "train_dis": tot[1] / n, "samples_per_s": n_local * self.di.world_size / max(elapsed, 1e-9)}, stopped

    def _train_group(self, g, *, weight: float, sync: bool) -> tuple[float, float]:
        """Forward and backward of one same-size group, loss scaled by ``weight``.

        Returns (loss, mean distance) for logging; for the segmenter the "distance" is the
        pixel error rate. Each forward is followed by its backward (DDP needs this pairing);
        all but the final backward of a step run under ``no_sync``.
        """
        st = self.state
        model = self._train_model()

        def ctx(final: bool):
            return model.no_sync() if (self.di.enabled and not final) else nullcontext()

        if st.stage == "segmenter":
            img, label = g[0].to(self.device), g[1].to(self.device)
            with ctx(sync):
                logits = self.segmenter(img)
                loss = nn.functional.cross_entropy(logits, label)
                (loss * weight).backward()
            return float(loss.detach()), float((logits.detach().argmax(1) != label).float().mean())
        b = self._to(g)
        if st.stage == "estimator":
            with ctx(sync):
                out, _ = self._estimator_step(b)
                (out.loss * weight).backward()
            return float(out.loss.detach()), float(out.dis.mean())
        R, t, moved, emb, dis = self._refine_start(b)
        total = 0.0
        iters = self.args.iterations
        for it in range(iters):
            # published: dis.backward() after every iteration; the inputs are detached between them
            with ctx(sync and it == iters - 1):
                q2, t2 = self.refiner(moved, emb, b["obj"])
                R2, t2, moved2 = refine_pose_torch(b["points"], R, t, q2, t2)
                r = refiner_loss(R2, t2, b["target"], b["model_points"], b["symmetric"])
                (r.loss * weight).backward()
            total += float(r.loss.detach())
            dis, R, t, moved = r.dis, R2.detach(), t2.detach(), moved2.detach()
        return total, float(dis.mean())

    def _refined_dis(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Test distance after ``--iterations`` refiner steps (no grad, unwrapped modules)."""
        R, t, moved, emb, dis = self._refine_start(b)
        refiner = unwrap_model(self.refiner)
        for _ in range(self.args.iterations):
            q2, t2 = refiner(moved, emb, b["obj"])
            R, t, moved = refine_pose_torch(b["points"], R, t, q2, t2)
            dis = refiner_loss(R, t, b["target"], b["model_points"], b["symmetric"]).dis
        return dis

    @torch.no_grad()
    def test(self, *, refine: bool | None = None) -> dict[str, float]:
        """Mean test distance of the current models (sharded over DDP ranks and reduced)."""
        st = self.state
        refine = (st.stage == "refiner") if refine is None else refine
        self._broadcast_buffers()
        models = [m for m in (self.estimator, self.refiner, self.segmenter) if m is not None]
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        loader = self._loader(self.test_set, train=False, epoch=0)
        s_dis = s_n = s_ce = 0.0
        inter = np.zeros(self.num_objects + 1)
        union = np.zeros(self.num_objects + 1)
        for groups in loader:
            for g in groups:
                if st.stage == "segmenter":
                    img, label = g[0].to(self.device), g[1].to(self.device)
                    logits = unwrap_model(self.segmenter)(img)
                    s_ce += float(nn.functional.cross_entropy(logits, label, reduction="sum"))
                    pred = logits.argmax(1)
                    s_dis += float((pred != label).float().sum())
                    s_n += float(label.numel())
                    for c in range(self.num_objects + 1):
                        p, t = pred == c, label == c
                        inter[c] += float((p & t).sum())
                        union[c] += float((p | t).sum())
                    continue
                b = self._to(g)
                if refine:
                    dis = self._refined_dis(b)
                else:
                    dis = self._estimator_step(b, raw=True)[0].dis
                s_dis += float(dis.sum())
                s_n += float(dis.numel())
        for m, mode in zip(models, modes):
            m.train(mode)
        if st.stage == "refiner" and self.estimator is not None:
            self.estimator.eval()
        red = _all_reduce_sum([s_dis, s_n, s_ce, *inter.tolist(), *union.tolist()], self.di, self.device)
        n = max(red[1], 1.0)
        if st.stage == "segmenter":
            k = self.num_objects + 1
            inter, union = np.array(red[3:3 + k]), np.array(red[3 + k:3 + 2 * k])
            present = union > 0
            miou = float((inter[present] / union[present]).mean()) if present.any() else 0.0
            # the selection criterion is the mean cross-entropy (published: test cost)
            return {"test_dis": red[2] / n, "pixel_error": red[0] / n, "miou": miou}
        return {"test_dis": red[0] / n, "test_samples": red[1]}

    def _broadcast_buffers(self) -> None:
        """DDP: copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts buffers at the start of each forward, so after the last training step the
        ranks' running statistics differ by their own last batch; test and save with rank 0's.
        """
        if not self.di.enabled:
            return
        for buf in unwrap_model(self._train_model()).buffers():
            dist.broadcast(buf.data, src=0)

    # -- schedule ---------------------------------------------------------------------------

    def _after_test(self) -> bool:
        """Published decay and refine switches; returns whether a switch to the refiner happened."""
        st, a = self.state, self.args
        if st.stage == "segmenter":
            return False
        if st.stage == "estimator" and st.best_test < a.decay_margin and not st.decay_started:
            st.decay_started = True
            st.lr *= a.lr_rate
            st.w *= a.w_rate
            self.optimizer = torch.optim.Adam(self._train_model().parameters(), lr=st.lr)
            if self.di.main:
                log.info("test dis %.4f < decay margin %.4f: lr -> %.2e, w -> %.4f", st.best_test, a.decay_margin, st.lr, st.w)
        if st.stage == "estimator" and a.auto_refine and st.best_test < a.refine_margin:
            from densefusion_ros.models.refiner import build_refiner

            if self.di.main:
                log.info("test dis %.4f < refine margin %.4f: switching to the refiner", st.best_test, a.refine_margin)
            st.estimator_checkpoint = str(self.out / "estimator_best.pth")
            st.estimator_test = st.best_test
            self.estimator = unwrap_model(self.estimator)
            self._enter_refine_schedule()
            self.refiner = build_refiner(num_objects=self.num_objects).to(self.device).train()
            self._freeze_estimator()
            self._wrap_ddp()
            self.optimizer = torch.optim.Adam(self._train_model().parameters(), lr=st.lr)
            return True
        return False

    # -- saving -----------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        st, a = self.state, self.args
        hw: dict[str, Any] = {
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.di.world_size,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
        }
        if self.device.type == "cuda":
            hw["gpu"] = torch.cuda.get_device_name(self.device)
        return {
            "stage": st.stage,
            "dataset": str(Path(a.dataset).resolve()),
            "train_split": a.train_split,
            "test_split": a.test_split,
            "catalog": str(Path(a.catalog or Path(a.dataset) / "catalog.yaml").resolve()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "epochs": st.epoch,
            "samples_seen": st.samples_seen,
            "train_time_s": round(st.train_time_s, 1),
            "wall_time_s": round(time.time() - self.t_start, 1),
            "hardware": hw,
            "seed": a.seed,
            "lr": st.lr,
            "w": st.w,
            "decay_started": st.decay_started,
            "batch_size": st.batch_size,
            "num_model_points": a.num_model_points,
            "noise_trans": a.noise_trans,
            "refine_iterations": a.iterations if st.stage == "refiner" else None,
            "estimator_checkpoint": st.estimator_checkpoint,
        }

    def _save(self, which: str, test: dict[str, float]) -> Path:
        from densefusion_ros.models.checkpoint import save_checkpoint

        st = self.state
        model = unwrap_model(self._train_model())
        metrics = {"test_dis": test.get("test_dis"), "best_test_dis": st.best_test, "epoch": st.epoch}
        metrics.update({k: v for k, v in test.items() if k != "test_dis"})
        if st.estimator_test is not None:
            metrics["estimator_test_dis"] = st.estimator_test
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        path = self.out / f"{st.stage}_{which}.pth"
        save_checkpoint(
            path, model, kind=st.stage,
            num_points=None if st.stage == "segmenter" else self.args.num_points,
            object_names=self.object_names, normalization=self.normalization,
            training=self._metadata(), metrics=metrics,
            input_scale=self.args.seg_scale if st.stage == "segmenter" else None,
        )  # fmt: skip
        if which == "current":
            blob = {"state": json.dumps(asdict(st)), "optimizer": self.optimizer.state_dict()}
            side = path.with_name(path.stem + ".state.pth")
            tmp = side.with_suffix(".tmp")
            torch.save(blob, tmp)
            os.replace(tmp, side)
        return path

    def _log_epoch(self, row: dict[str, Any]) -> None:
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.csv_fields])
        if self.tb is not None:
            for k in ("train_loss", "train_dis", "test_dis", "lr", "w", "samples_per_s"):
                v = row.get(k)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{row['stage']}/{k}", v, row["epoch"])

    # -- main loop --------------------------------------------------------------------------

    def fit(self) -> int:
        a, st = self.args, self.state
        deadline = self.t_start + a.max_minutes * 60.0 if a.max_minutes else None
        if st.stage == "refiner" and st.estimator_test is None:
            st.estimator_test = self.test(refine=False)["test_dis"]
            if self.di.main:
                log.info("estimator alone: test dis %.4f m", st.estimator_test)
        while st.epoch < a.epochs:
            epoch = st.epoch
            stats, stopped = self._train_epoch(epoch, deadline)
            test = self.test()
            if not stopped:
                st.epoch += 1
                st.batches_done = 0
            st.last_test = test["test_dis"]
            improved = test["test_dis"] < st.best_test
            if improved:
                st.best_test = test["test_dis"]
            row = {
                "time": time.strftime("%Y-%m-%d %H:%M:%S"), "stage": st.stage, "epoch": epoch + 1,
                "samples": st.samples_seen, "test_dis": test["test_dis"], "best_test": st.best_test,
                "lr": st.lr, "w": st.w, "batch_size": st.batch_size, "elapsed_s": round(time.time() - self.t_start, 1),
                **{k: v for k, v in stats.items()},
            }  # fmt: skip
            st.history.append({k: row[k] for k in ("epoch", "stage", "train_loss", "train_dis", "test_dis")})
            if self.di.main:
                self._log_epoch(row)
                extra = "".join(f" {k} {v:.4f}" for k, v in test.items() if k not in ("test_dis", "test_samples"))
                log.info(
                    "%s epoch %d: train loss %.4f dis %.4f | test %.4f (best %.4f)%s | %.1f samples/s%s",
                    st.stage, epoch + 1, stats["train_loss"], stats["train_dis"], test["test_dis"], st.best_test, extra,
                    stats["samples_per_s"], " | stopped at --max-minutes" if stopped else "",
                )  # fmt: skip
                if improved:
                    self._save("best", test)
                self._save("current", test)
            switched = self._after_test()
            if switched and self.di.main:
                self._save("current", {"test_dis": math.inf})
            if stopped:
                break
        if self.di.enabled:
            dist.barrier()
        return 0


if __name__ == "__main__":
    sys.exit(main())
