"""End-to-end training smoke runs on a tiny synthetic BOP dataset: save, load, resume (CPU; CUDA when present)."""

from __future__ import annotations

import csv

import pytest
import torch

from densefusion_ros.models.checkpoint import load_estimator, load_refiner, load_segmenter, read_metadata
from densefusion_ros.train import trainer

FAST = [
    "--device", "cpu", "--threads", "1", "--no-progress", "--num-points", "64", "--num-model-points", "100",
    "--epoch-samples", "6", "--test-samples", "3", "--batch-size", "3",
]  # fmt: skip


def test_estimator_trains_saves_loads_and_resumes(toy_dataset, tmp_path):
    out = tmp_path / "est"
    assert trainer.main(["--stage", "estimator", "--dataset", str(toy_dataset), "--out", str(out), "--epochs", "1", *FAST]) == 0
    for name in ("estimator_current.pth", "estimator_best.pth", "estimator_current.state.pth", "train_log.csv"):
        assert (out / name).is_file(), name
    est = load_estimator(out / "estimator_best.pth")
    meta = read_metadata(out / "estimator_current.pth")
    assert meta.kind == "estimator" and meta.backbone == "compact" and meta.num_objects == 2
    assert meta.object_names == ("lblock", "can") and meta.num_points == 64
    assert meta.normalization["scale"] == pytest.approx(1 / 255)
    assert meta.training["epochs"] == 1 and meta.training["stage"] == "estimator"
    assert meta.metrics["best_test_dis"] > 0
    before = {k: v.clone() for k, v in est.state_dict().items()}

    # resume: one more epoch continues the schedule and the log
    assert trainer.main([
        "--stage", "estimator", "--dataset", str(toy_dataset), "--out", str(out), "--epochs", "2",
        "--resume", str(out / "estimator_current.pth"), *FAST,
    ]) == 0  # fmt: skip
    meta2 = read_metadata(out / "estimator_current.pth")
    assert meta2.training["epochs"] == 2 and meta2.training["samples_seen"] == 12
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    after = load_estimator(out / "estimator_current.pth").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    # resuming from a checkpoint without its .state.pth takes the schedule from the metadata
    best_epoch = read_metadata(out / "estimator_best.pth").training["epochs"]
    assert trainer.main([
        "--stage", "estimator", "--dataset", str(toy_dataset), "--out", str(out), "--epochs", str(best_epoch + 1),
        "--resume", str(out / "estimator_best.pth"), *FAST,
    ]) == 0  # fmt: skip
    assert read_metadata(out / "estimator_current.pth").training["epochs"] == best_epoch + 1

    # fine-tuning: --init-estimator starts a fresh schedule from those weights (lr 0: the
    # parameters stay; batch-norm statistics may move)
    tune = tmp_path / "tune"
    assert trainer.main([
        "--stage", "estimator", "--dataset", str(toy_dataset), "--out", str(tune), "--epochs", "1", "--lr", "0",
        "--init-estimator", str(out / "estimator_best.pth"), "--preload-crops", *FAST,
    ]) == 0  # fmt: skip
    tuned = load_estimator(tune / "estimator_current.pth")
    assert tuned.metadata.training["epochs"] == 1 and tuned.metadata.training["samples_seen"] == 6
    assert tuned.metadata.training["estimator_checkpoint"].endswith("estimator_best.pth")
    start = dict(load_estimator(out / "estimator_best.pth").named_parameters())
    assert all(torch.equal(start[k], v) for k, v in tuned.named_parameters())

    # the refiner stage starts from the frozen estimator at the decayed learning rate
    frozen = load_estimator(out / "estimator_best.pth").state_dict()
    ref_out = tmp_path / "ref"
    assert trainer.main([
        "--stage", "refiner", "--dataset", str(toy_dataset), "--out", str(ref_out), "--epochs", "1",
        "--init-estimator", str(out / "estimator_best.pth"), *FAST,
    ]) == 0  # fmt: skip
    ref = load_refiner(ref_out / "refiner_current.pth")
    rmeta = ref.metadata
    assert rmeta.training["estimator_checkpoint"].endswith("estimator_best.pth")
    assert rmeta.training["lr"] == pytest.approx(1e-4 * 0.3) and rmeta.training["batch_size"] == 1
    assert rmeta.metrics["estimator_test_dis"] > 0
    # the estimator was not touched
    est_again = load_estimator(out / "estimator_best.pth").state_dict()
    assert all(torch.equal(frozen[k], est_again[k]) for k in est_again)


def test_auto_refine_switches_to_the_refiner(toy_dataset, tmp_path):
    out = tmp_path / "auto"
    assert trainer.main([
        "--stage", "estimator", "--dataset", str(toy_dataset), "--out", str(out), "--epochs", "2", "--auto-refine",
        "--decay-margin", "10", "--refine-margin", "10", *FAST,
    ]) == 0  # fmt: skip
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [r["stage"] for r in rows] == ["estimator", "refiner"]
    assert float(rows[1]["lr"]) == pytest.approx(3e-5) and float(rows[1]["w"]) == pytest.approx(0.015 * 0.3)
    meta = read_metadata(out / "refiner_current.pth")
    assert meta.kind == "refiner" and meta.training["estimator_checkpoint"] == str(out / "estimator_best.pth")
    assert meta.training["epochs"] == 2 and meta.metrics["estimator_test_dis"] > 0


def test_segmenter_and_time_budget(toy_dataset, tmp_path):
    out = tmp_path / "seg"
    args = ["--stage", "segmenter", "--dataset", str(toy_dataset), "--out", str(out), "--epochs", "50", "--seg-scale", "0.5",
            "--max-minutes", "0.0001", *FAST]  # fmt: skip
    assert trainer.main(args) == 0
    seg = load_segmenter(out / "segmenter_current.pth")
    assert seg.metadata.num_classes == 3
    meta = read_metadata(out / "segmenter_current.pth")
    # --max-minutes stopped the first epoch after one batch, saved, and exited
    assert meta.training["epochs"] == 0 and meta.training["samples_seen"] == 3
    assert "miou" in meta.metrics and meta.input_scale == 0.5  # the pipeline segments at this scale


def test_refiner_stage_needs_an_estimator(toy_dataset, tmp_path):
    with pytest.raises(SystemExit):
        trainer.main(["--stage", "refiner", "--dataset", str(toy_dataset), "--out", str(tmp_path / "r"), *FAST])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_estimator_and_refiner_steps(toy_dataset, tmp_path):
    """The smoke run on CUDA: training steps change the weights; the checkpoints load on the CPU."""
    on_cuda = [a if a != "cpu" else "cuda" for a in FAST]
    est_out, ref_out = tmp_path / "est", tmp_path / "ref"
    common = ["--dataset", str(toy_dataset), *on_cuda]
    assert trainer.main(["--stage", "estimator", "--out", str(est_out), "--epochs", "1", *common]) == 0
    first = load_estimator(est_out / "estimator_current.pth")
    assert first.metadata.training["hardware"]["device"].startswith("cuda")
    assert next(first.parameters()).device.type == "cpu"
    resume = ["--resume", str(est_out / "estimator_current.pth")]
    assert trainer.main(["--stage", "estimator", "--out", str(est_out), "--epochs", "2", *resume, *common]) == 0
    second = load_estimator(est_out / "estimator_current.pth")
    assert second.metadata.training["samples_seen"] == 12
    before, after = first.state_dict(), second.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    init = ["--init-estimator", str(est_out / "estimator_current.pth")]
    assert trainer.main(["--stage", "refiner", "--out", str(ref_out), "--epochs", "1", *init, *common]) == 0
    ref = load_refiner(ref_out / "refiner_current.pth")
    assert ref.metadata.training["hardware"]["device"].startswith("cuda")
    assert all(torch.isfinite(p).all() for p in ref.parameters())
