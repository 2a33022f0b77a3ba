"""The settings of one training run: :class:`TrainConfig`, and the ``train`` command line that builds it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

__all__ = ["NORMALIZATIONS", "STAGES", "TrainConfig", "configure_parser"]

STAGES = ("segmenter", "estimator", "refiner")
NORMALIZATIONS = ("imagenet", "published")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``densefusion-ros train`` is told; one field per option (see :func:`configure_parser`).

    Distances in metres; ``lr`` / ``w`` are the starting values (the schedule in
    :class:`~densefusion_ros.train.state.TrainState` changes them).
    """

    stage: str
    dataset: str
    out: str
    catalog: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    backbone: str = "compact"
    seg_arch: str = "compact"
    normalization: str = "imagenet"
    epochs: int = 500
    epoch_samples: int | None = None
    test_samples: int = 300
    lr: float = 1e-4
    lr_rate: float = 0.3
    w: float = 0.015
    w_rate: float = 0.3
    decay_margin: float = 0.016
    refine_margin: float = 0.013
    auto_refine: bool = False
    iterations: int = 2
    batch_size: int = 8
    num_points: int = 500
    num_model_points: int = 500
    noise_trans: float = 0.03
    occluder_prob: float = 0.0
    mask_noise_prob: float = 0.0
    jitter: bool = True
    seg_scale: float = 1.0
    resume: str | None = None
    init_estimator: str | None = None
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None
    workers: int = 0
    threads: int | None = None
    cache_crops: bool = True
    preload_crops: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The config of parsed :func:`configure_parser` options (``--no-jitter``, ``--no-progress`` turned positive)."""
        values = vars(args)
        names = {f.name for f in fields(cls)} - {"jitter", "progress"}
        return cls(**{k: values[k] for k in names}, jitter=not values["no_jitter"], progress=not values["no_progress"])


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``p``; :meth:`TrainConfig.from_args` reads them back."""
    d = TrainConfig.__dataclass_fields__
    p.add_argument("--stage", choices=STAGES, required=True, help="what to train")
    p.add_argument("--dataset", required=True, help="BOP dataset folder (with catalog.yaml unless --catalog)")
    p.add_argument("--catalog", default=None, help="object catalog YAML (default: DATASET/catalog.yaml)")
    p.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    p.add_argument("--train-split", default=d["train_split"].default)
    p.add_argument("--test-split", default=d["test_split"].default,
                   help="held-out split (falls back to the train split without augmentation)")
    p.add_argument("--backbone", default=d["backbone"].default, choices=("compact", "psp_resnet18"), help="estimator color backbone")
    p.add_argument("--seg-arch", default=d["seg_arch"].default, choices=("compact", "segnet"), help="segmenter architecture")
    p.add_argument("--normalization", default=d["normalization"].default, choices=NORMALIZATIONS,
                   help="image normalisation stored in the checkpoint (published = 0-255 with ImageNet mean/std)")
    p.add_argument("--epochs", type=int, default=d["epochs"].default, help="maximum epochs (published 500)")
    p.add_argument("--epoch-samples", type=int, default=None, help="samples per epoch (default: every training instance once)")
    p.add_argument("--test-samples", type=int, default=d["test_samples"].default,
                   help="test instances / frames per evaluation (0 = all)")
    p.add_argument("--lr", type=float, default=d["lr"].default)
    p.add_argument("--lr-rate", type=float, default=d["lr_rate"].default)
    p.add_argument("--w", type=float, default=d["w"].default, help="confidence weight (published code 0.015, paper 0.01)")
    p.add_argument("--w-rate", type=float, default=d["w_rate"].default)
    p.add_argument("--decay-margin", type=float, default=d["decay_margin"].default, help="m; decay lr and w once below")
    p.add_argument("--refine-margin", type=float, default=d["refine_margin"].default,
                   help="m; --auto-refine switches to the refiner below")
    p.add_argument("--auto-refine", action="store_true", help="estimator stage: switch to the refiner at --refine-margin")
    p.add_argument("--iterations", type=int, default=d["iterations"].default, help="refiner iterations in training and test")
    p.add_argument("--batch-size", type=int, default=d["batch_size"].default,
                   help="samples per optimizer step (published 8, accumulated)")
    p.add_argument("--num-points", type=int, default=d["num_points"].default, help="points per instance N")
    p.add_argument("--num-model-points", type=int, default=d["num_model_points"].default, help="model points M in the loss")
    p.add_argument("--noise-trans", type=float, default=d["noise_trans"].default, help="m; translation noise (published 0.03)")
    p.add_argument("--occluder-prob", type=float, default=d["occluder_prob"].default,
                   help="probability of a random occluder per sample")
    p.add_argument("--mask-noise-prob", type=float, default=d["mask_noise_prob"].default,
                   help="probability of eroding / dilating the mask")
    p.add_argument("--no-jitter", action="store_true", help="no colour jitter")
    p.add_argument("--seg-scale", type=float, default=d["seg_scale"].default, help="segmenter: resize frames by this factor")
    p.add_argument("--resume", default=None, help="checkpoint to continue from (its .state.pth restores the schedule)")
    p.add_argument(
        "--init-estimator", default=None,
        help="refiner stage: the trained estimator (frozen); estimator stage: start from these weights "
        "(fine-tuning, e.g. from a published or bundled checkpoint) with a fresh schedule",
    )  # fmt: skip
    p.add_argument("--device", default=d["device"].default, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=d["seed"].default)
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly (test, save) after this wall time")
    p.add_argument("--workers", type=int, default=d["workers"].default, help="DataLoader workers (0 = load in the training process)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: this rank's share of the cores not busy at start)")
    p.add_argument("--cache-crops", action=argparse.BooleanOptionalAction, default=True,
                   help="keep decoded crop regions in memory across epochs (in each DataLoader worker)")
    p.add_argument("--preload-crops", action="store_true",
                   help="decode every instance's crop before training (shared by forked DataLoader workers)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p
