"""The training schedule (:class:`TrainState`): saved beside each ``*_current.pth`` for ``--resume``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from densefusion_ros.models.metadata import CheckpointMeta
from densefusion_ros.train.config import TrainConfig

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """Where a run stands: stage, progress, the decayed ``lr`` / ``w`` and the best test distance (m)."""

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

    @classmethod
    def fresh(cls, config: TrainConfig) -> TrainState:
        """The start of a run: the configured stage, ``lr``, ``w`` and batch size."""
        return cls(stage=config.stage, lr=config.lr, w=config.w, batch_size=config.batch_size)

    @classmethod
    def from_metadata(cls, meta: CheckpointMeta, config: TrainConfig) -> TrainState | None:
        """The schedule recorded in a checkpoint's ``training`` and ``metrics`` (``None`` without a stage)."""
        tr, mt = meta.training, meta.metrics
        if not tr.get("stage"):
            return None
        return cls(
            stage=tr["stage"], epoch=int(tr.get("epochs") or 0), samples_seen=int(tr.get("samples_seen") or 0),
            lr=float(tr.get("lr", config.lr)), w=float(tr.get("w", config.w)),
            batch_size=int(tr.get("batch_size") or config.batch_size), decay_started=bool(tr.get("decay_started")),
            best_test=float(mt["best_test_dis"]) if mt.get("best_test_dis") is not None else math.inf,
            estimator_test=mt.get("estimator_test_dis"), train_time_s=float(tr.get("train_time_s") or 0.0),
            estimator_checkpoint=tr.get("estimator_checkpoint"),
        )  # fmt: skip

    def decay(self, config: TrainConfig) -> None:
        """The published decay, once: ``lr`` and ``w`` times ``--lr-rate`` / ``--w-rate``."""
        self.decay_started = True
        self.lr *= config.lr_rate
        self.w *= config.w_rate

    def enter_refiner(self, config: TrainConfig) -> None:
        """The published switch to refinement: decayed lr/w, batch size divided by the iterations."""
        self.stage = "refiner"
        if not self.decay_started:
            self.decay(config)
        self.batch_size = max(1, config.batch_size // max(1, config.iterations))
        self.best_test = math.inf
