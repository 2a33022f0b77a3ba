"""The typed training settings: TrainConfig from the command line, TrainState from checkpoint metadata."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

import pytest

from densefusion_ros import cli
from densefusion_ros.models.metadata import CheckpointMeta
from densefusion_ros.train.config import TrainConfig, configure_parser
from densefusion_ros.train.state import TrainState


def _parse(argv: list[str]) -> argparse.Namespace:
    return configure_parser(argparse.ArgumentParser()).parse_args(argv)


def test_defaults_of_the_command_line_and_the_dataclass_agree():
    cfg = TrainConfig.from_args(_parse(["--stage", "estimator", "--dataset", "D", "--out", "O"]))
    assert cfg == TrainConfig(stage="estimator", dataset="D", out="O")
    assert cfg.jitter and cfg.progress and cfg.cache_crops and not cfg.preload_crops


def test_every_option_reaches_its_field():
    argv = [
        "--stage", "refiner", "--dataset", "D", "--catalog", "C", "--out", "O", "--train-split", "tr", "--test-split", "te",
        "--backbone", "psp_resnet18", "--seg-arch", "segnet", "--normalization", "published", "--epochs", "3",
        "--epoch-samples", "9", "--test-samples", "0", "--lr", "0.5", "--lr-rate", "0.2", "--w", "0.1", "--w-rate", "0.4",
        "--decay-margin", "0.02", "--refine-margin", "0.01", "--auto-refine", "--iterations", "4", "--batch-size", "16",
        "--num-points", "100", "--num-model-points", "200", "--noise-trans", "0.01", "--occluder-prob", "0.3",
        "--mask-noise-prob", "0.2", "--no-jitter", "--seg-scale", "0.5", "--resume", "R", "--init-estimator", "E",
        "--device", "cpu", "--seed", "7", "--max-minutes", "1.5", "--workers", "2", "--threads", "3", "--no-cache-crops",
        "--preload-crops", "--no-progress",
    ]  # fmt: skip
    cfg = TrainConfig.from_args(_parse(argv))
    assert cfg == TrainConfig(
        stage="refiner", dataset="D", catalog="C", out="O", train_split="tr", test_split="te", backbone="psp_resnet18",
        seg_arch="segnet", normalization="published", epochs=3, epoch_samples=9, test_samples=0, lr=0.5, lr_rate=0.2, w=0.1,
        w_rate=0.4, decay_margin=0.02, refine_margin=0.01, auto_refine=True, iterations=4, batch_size=16, num_points=100,
        num_model_points=200, noise_trans=0.01, occluder_prob=0.3, mask_noise_prob=0.2, jitter=False, seg_scale=0.5,
        resume="R", init_estimator="E", device="cpu", seed=7, max_minutes=1.5, workers=2, threads=3, cache_crops=False,
        preload_crops=True, progress=False,
    )  # fmt: skip
    # every field differs from its default here: no option is left unread
    assert all(getattr(cfg, f.name) != f.default for f in fields(TrainConfig) if f.name not in ("stage", "dataset", "out"))


def test_the_cli_parses_train_options():
    parser = cli.build_parser(["train"])
    args = parser.parse_args(["train", "--stage", "segmenter", "--dataset", "D", "--out", "O", "--seg-scale", "0.5"])
    assert TrainConfig.from_args(args).seg_scale == 0.5


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage"):
        TrainConfig(stage="detector", dataset="D", out="O")


def test_schedule_from_metadata_and_the_refine_switch():
    cfg = TrainConfig(stage="estimator", dataset="D", out="O", batch_size=8, iterations=2)
    assert TrainState.from_metadata(CheckpointMeta(), cfg) is None
    meta = CheckpointMeta(training={"stage": "estimator", "epochs": 5, "samples_seen": 40, "lr": 1e-4, "w": 0.015,
                                    "batch_size": 8}, metrics={"best_test_dis": 0.02})  # fmt: skip
    st = TrainState.from_metadata(meta, cfg)
    assert st.epoch == 5 and st.samples_seen == 40 and st.best_test == 0.02 and not st.decay_started
    st.enter_refiner(cfg)
    assert st.stage == "refiner" and st.decay_started and st.batch_size == 4 and math.isinf(st.best_test)
    assert st.lr == pytest.approx(3e-5) and st.w == pytest.approx(0.0045)
    st.enter_refiner(cfg)  # the decay happens once
    assert st.lr == pytest.approx(3e-5)
