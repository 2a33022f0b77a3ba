"""``densefusion-ros train``: train the segmenter, the estimator or the refiner on a BOP dataset.

Usage::

    densefusion-ros train --stage estimator --dataset DATA --out runs/est --backbone compact \\
        --epochs 50 --max-minutes 40
    densefusion-ros train --stage refiner --dataset DATA --out runs/ref \\
        --init-estimator runs/est/estimator_best.pth --max-minutes 20
    densefusion-ros train --stage segmenter --dataset DATA --out runs/seg --seg-scale 0.5
    torchrun --nproc_per_node=2 -m densefusion_ros.cli train --stage estimator ...   # DDP

The options become a :class:`~densefusion_ros.train.config.TrainConfig`; what differs between
the stages lives in :mod:`densefusion_ros.train.stages`, the schedule in
:class:`~densefusion_ros.train.state.TrainState`.

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
batches of one and accumulated 8, [ISSUE #16]). Batching matters most on a GPU. The point-wise
heads dominate the cost of a step, so throughput scales roughly with 1/``--num-points``.
``--threads`` defaults to the cores not busy at start, since oversubscribed intra-op threads
are much slower than one thread. Measured throughputs: models/README.md, "Training throughput".

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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from densefusion_ros.catalog import Catalog
from densefusion_ros.models.checkpoint import read_metadata, save_checkpoint, unwrap_model
from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION, PUBLISHED_NORMALIZATION
from densefusion_ros.runtime import cpu_threads, resolve_device
from densefusion_ros.train.config import TrainConfig, configure_parser
from densefusion_ros.train.distributed import all_reduce_sum, any_rank, init_distributed, rank_device
from densefusion_ros.train.stages import Run, Stage, Sums, make_stage
from densefusion_ros.train.state import TrainState

__all__ = ["Trainer", "configure_parser", "main", "run"]

log = logging.getLogger("densefusion_ros.train")


def run(args: argparse.Namespace) -> int:
    """The ``train`` sub-command: :class:`Trainer` on the :class:`TrainConfig` of ``args``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    trainer = Trainer(TrainConfig.from_args(args))
    try:
        return trainer.fit()
    finally:
        trainer.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m densefusion_ros.train.trainer ...`` (same options as ``densefusion-ros train``)."""
    parser = configure_parser(argparse.ArgumentParser(prog="densefusion-ros train"))
    return run(parser.parse_args(argv))


def _group_size(g) -> int:
    return int(g["obj"].shape[0]) if isinstance(g, dict) else int(g[0].shape[0])


class Trainer:
    """One training run (see the module docstring). ``fit()`` returns the process exit code.

    Attributes:
        stage: the :class:`~densefusion_ros.train.stages.Stage` being trained (``stage.model``).
        state: the schedule, :class:`~densefusion_ros.train.state.TrainState`.
        di: this process's DDP rank (:class:`~densefusion_ros.train.distributed.DistInfo`).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = cfg = config
        self.t_start = time.time()
        self.di = init_distributed(resolve_device(cfg.device).type)
        self.device = rank_device(cfg.device, self.di)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg.threads, self.di.world_size))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.out = Path(cfg.out)
        if self.di.main:
            self.out.mkdir(parents=True, exist_ok=True)
        catalog = Catalog.load(cfg.catalog or Path(cfg.dataset) / "catalog.yaml")
        indices = {o.index for o in catalog}
        self.object_names = [catalog.by_index(i).name if i in indices else f"unused_{i}" for i in range(catalog.num_objects)]
        self.tb = None
        self._loaders: dict[str, DataLoader] = {}
        self._resume_blob: dict[str, Any] | None = None
        resumed = self._read_resume_state() if cfg.resume else None
        self.state = resumed or TrainState.fresh(cfg)
        normalization = dict(PUBLISHED_NORMALIZATION if cfg.normalization == "published" else IMAGENET_NORMALIZATION)
        self.run = Run(cfg, catalog, self.device, self.di, self.state, normalization)
        self.stage: Stage = make_stage(self.run, resumed is not None)
        self._start_stage()
        if resumed is not None and self._resume_blob is not None and self._resume_blob.get("optimizer") is not None:
            self.optimizer.load_state_dict(self._resume_blob["optimizer"])
            for g in self.optimizer.param_groups:
                g["lr"] = self.state.lr
        self._setup_data()
        if self.di.main:
            self._open_logs()

    # -- setup ------------------------------------------------------------------------------

    def _start_stage(self) -> None:
        """Training mode, the DDP wrapper and a fresh Adam for the current stage."""
        self.stage.train_mode()
        if self.di.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.stage.model = nn.parallel.DistributedDataParallel(unwrap_model(self.stage.model), device_ids=ids)
        self.optimizer = torch.optim.Adam(self.stage.model.parameters(), lr=self.state.lr)

    def _read_resume_state(self) -> TrainState | None:
        """The schedule of ``--resume``: its ``.state.pth`` (with the optimizer), else its metadata."""
        cfg = self.config
        path = Path(cfg.resume)
        side = path.with_name(path.stem + ".state.pth")
        if side.is_file():
            self._resume_blob = torch.load(side, map_location="cpu", weights_only=True)
            st = TrainState(**json.loads(self._resume_blob["state"]))
        else:  # e.g. a *_best.pth: the schedule from its metadata, a fresh optimizer
            log.warning("no %s beside the checkpoint: fresh optimizer, schedule from its metadata", side.name)
            st = TrainState.from_metadata(read_metadata(path), cfg)
            if st is None:
                return None
        if st.stage != cfg.stage and not (cfg.stage == "estimator" and st.stage == "refiner"):
            raise SystemExit(f"--resume {path} is a {st.stage} run, not {cfg.stage}")
        return st

    def _setup_data(self) -> None:
        from densefusion_ros.data.bop import BopDataset

        cfg = self.config
        train_bop = BopDataset(cfg.dataset, cfg.train_split, load_masks=False)
        try:
            test_bop = BopDataset(cfg.dataset, cfg.test_split, load_masks=False)
        except FileNotFoundError:
            log.warning("no %r split in %s: testing on the train split without augmentation", cfg.test_split, cfg.dataset)
            test_bop = train_bop
        self.train_set, self.test_set = self.stage.datasets(train_bop, test_bop)
        if cfg.preload_crops and cfg.cache_crops and hasattr(self.train_set, "preload"):
            t0 = time.time()
            for ds in (self.train_set, self.test_set):
                ds.preload(threads=max(2, os.cpu_count() or 2))
            if self.di.main:
                log.info("preloaded %d crops in %.1f s", len(self.train_set) + len(self.test_set), time.time() - t0)
        if self.di.main:
            log.info(
                "stage %s: %d training and %d test %s, %d objects, device %s, %d thread(s), world size %d",
                self.state.stage, len(self.train_set), len(self.test_set), self.stage.unit,
                self.run.num_objects, self.device, torch.get_num_threads(), self.di.world_size,
            )  # fmt: skip

    def _loader(self, dataset, *, train: bool, epoch: int, start_batch: int = 0) -> DataLoader:
        """The DataLoader of ``dataset``, made once (workers persist, keeping their crop caches)."""
        from densefusion_ros.train.dataset import SizeGroupedBatchSampler

        cfg, st = self.config, self.state
        key = "train" if train else "test"
        if key not in self._loaders:
            sampler = SizeGroupedBatchSampler(
                self.stage.sizes(dataset), st.batch_size, samples_per_epoch=(cfg.epoch_samples if train else None),
                shuffle=train, seed=cfg.seed, rank=self.di.rank, world_size=self.di.world_size,
            )  # fmt: skip
            self._loaders[key] = DataLoader(
                dataset, batch_sampler=sampler, collate_fn=self.stage.collate, num_workers=cfg.workers,
                persistent_workers=cfg.workers > 0, pin_memory=self.device.type == "cuda",
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

    # -- training and test ------------------------------------------------------------------

    def _train_epoch(self, epoch: int, deadline: float | None) -> tuple[dict[str, float], bool]:
        """One epoch; returns (mean stats, stopped early)."""
        st = self.state
        self.stage.train_mode()
        loader = self._loader(self.train_set, train=True, epoch=epoch, start_batch=st.batches_done)
        bar = None
        if self.di.main and self.config.progress:
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
                loss, dis = self.stage.train_group(g, weight=n / n_batch, final=gi == len(groups) - 1)
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
            if deadline is not None and any_rank(time.time() >= deadline, self.di, self.device):
                stopped = True
                break
        if bar is not None:
            bar.close()
        elapsed = time.time() - t0
        st.train_time_s += elapsed
        tot = all_reduce_sum([sums["loss"], sums["dis"], sums["n"]], self.di, self.device)
        n = max(tot[2], 1.0)
        return {"train_loss": tot[0] / n, "train_dis": tot[1] / n, "samples_per_s": n_local * self.di.world_size / max(elapsed, 1e-9)}, stopped

    @torch.no_grad()
    def test(self, sums: Sums | None = None) -> dict[str, float]:
        """Mean test distance of the current models (sharded over DDP ranks and reduced).

        ``sums``: the per-group test sums (default: the stage's own test).
        """
        sums = sums or self.stage.test_sums
        self._broadcast_buffers()
        models = self.stage.modules()
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        total = [0.0] * self.stage.num_test_sums
        for groups in self._loader(self.test_set, train=False, epoch=0):
            for g in groups:
                total = [a + b for a, b in zip(total, sums(g))]
        for m, mode in zip(models, modes):
            m.train(mode)
        return self.stage.test_result(all_reduce_sum(total, self.di, self.device))

    def _broadcast_buffers(self) -> None:
        """DDP: copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts buffers at the start of each forward, so after the last training step the
        ranks' running statistics differ by their own last batch; test and save with rank 0's.
        """
        if not self.di.enabled:
            return
        for buf in unwrap_model(self.stage.model).buffers():
            dist.broadcast(buf.data, src=0)

    # -- schedule ---------------------------------------------------------------------------

    def _after_test(self) -> bool:
        """Published decay and refine switches; returns whether a switch to the refiner happened."""
        st, cfg = self.state, self.config
        if self.stage.decays and st.best_test < cfg.decay_margin and not st.decay_started:
            st.decay(cfg)
            self.optimizer = torch.optim.Adam(self.stage.model.parameters(), lr=st.lr)
            if self.di.main:
                log.info("test dis %.4f < decay margin %.4f: lr -> %.2e, w -> %.4f", st.best_test, cfg.decay_margin, st.lr, st.w)
        successor = self.stage.successor()
        if successor is None:
            return False
        if self.di.main:
            log.info("test dis %.4f < refine margin %.4f: switching to the refiner", st.best_test, cfg.refine_margin)
        st.estimator_checkpoint = str(self.out / "estimator_best.pth")
        st.estimator_test = st.best_test
        st.enter_refiner(cfg)
        self.stage = successor
        self._start_stage()
        return True

    # -- saving -----------------------------------------------------------------------------

    def _training_record(self) -> dict[str, Any]:
        """The checkpoint's ``training`` entry: data, command, progress, hardware, schedule."""
        st, cfg = self.state, self.config
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
            "dataset": str(Path(cfg.dataset).resolve()),
            "train_split": cfg.train_split,
            "test_split": cfg.test_split,
            "catalog": str(Path(cfg.catalog or Path(cfg.dataset) / "catalog.yaml").resolve()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "epochs": st.epoch,
            "samples_seen": st.samples_seen,
            "train_time_s": round(st.train_time_s, 1),
            "wall_time_s": round(time.time() - self.t_start, 1),
            "hardware": hw,
            "seed": cfg.seed,
            "lr": st.lr,
            "w": st.w,
            "decay_started": st.decay_started,
            "batch_size": st.batch_size,
            "num_model_points": cfg.num_model_points,
            "noise_trans": cfg.noise_trans,
            **self.stage.training_fields(),
            "estimator_checkpoint": st.estimator_checkpoint,
        }

    def _save(self, which: str, test: dict[str, float]) -> Path:
        st = self.state
        metrics = {"test_dis": test.get("test_dis"), "best_test_dis": st.best_test, "epoch": st.epoch}
        metrics.update({k: v for k, v in test.items() if k != "test_dis"})
        if st.estimator_test is not None:
            metrics["estimator_test_dis"] = st.estimator_test
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        path = self.out / f"{st.stage}_{which}.pth"
        save_checkpoint(
            path, unwrap_model(self.stage.model), kind=self.stage.name, object_names=self.object_names,
            normalization=self.run.normalization, training=self._training_record(), metrics=metrics,
            **self.stage.checkpoint_fields(),
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
        cfg, st = self.config, self.state
        deadline = self.t_start + cfg.max_minutes * 60.0 if cfg.max_minutes else None
        if st.estimator_test is None and self.stage.baseline_sums is not None:
            st.estimator_test = self.test(self.stage.baseline_sums)["test_dis"]
            if self.di.main:
                log.info("estimator alone: test dis %.4f m", st.estimator_test)
        while st.epoch < cfg.epochs:
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
