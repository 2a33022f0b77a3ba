"""``densefusion-ros evaluate`` on a tiny synthetic dataset, through the pipeline."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from densefusion_ros import cli
from densefusion_ros.catalog import Catalog
from densefusion_ros.eval.evaluate import EvalConfig, EvalResult, InstanceRecord, _score, evaluate, false_detections, summarize, write_reports
from densefusion_ros.frame import GtObject
from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION
from tools.random_networks import save_random_networks


@pytest.fixture(scope="module")
def setup(tmp_path_factory, toy_dataset):
    nets = save_random_networks(tmp_path_factory.mktemp("ck"), 2, num_points=64, normalization=IMAGENET_NORMALIZATION,
                                object_names=["lblock", "can"])  # fmt: skip
    return toy_dataset, nets["estimator"], nets["refiner"]


def test_false_detections_are_poses_of_absent_classes():
    gt = [GtObject(class_id=1, R=np.eye(3), t=np.zeros(3)), GtObject(class_id=3, R=np.eye(3), t=np.zeros(3))]
    preds = [type("P", (), {"class_id": c})() for c in (1, 2, 3, 2, 4)]
    assert false_detections(gt, preds) == 3 and false_detections(gt, []) == 0 and false_detections(None, preds[:1]) == 1


def test_verify_hypotheses_limit_the_turns_tried(setup, monkeypatch):
    """``verify_hypotheses`` reaches the verify mode's ICP options (and its report); the other modes keep theirs."""
    from densefusion_ros import pipeline

    seen = []
    real = pipeline.verify_instances
    monkeypatch.setattr(pipeline, "verify_instances", lambda *a, **k: seen.append(a[-1].init_rotations) or real(*a, **k))
    root, est, ref = setup
    res = evaluate(EvalConfig(dataset=root, split="test", weights=est, icp_verify=True, verify_hypotheses=3, baseline=False, metric_points=300))
    assert res.modes == ["per-pixel", "per-pixel+verify"] and res.config["verify_hypotheses"] == 3
    assert res.config["estimator_backbone"] == "compact" and res.config["num_points"] == 64
    assert seen and set(seen) == {3}


def test_evaluate_all_modes_and_reports(setup, tmp_path):
    root, est, ref = setup
    res = evaluate(EvalConfig(dataset=root, split="test", weights=est, refiner=ref, iterations=2, icp=True, icp_verify=True,
                              metric_points=300))  # fmt: skip
    assert res.modes == ["per-pixel", "iterative", "iterative+icp", "iterative+verify", "baseline"]
    n_gt = len([r for r in res.records if r.mode == "per-pixel"])
    assert n_gt >= 3 and res.frames == 3
    for mode in res.modes:
        recs = [r for r in res.records if r.mode == mode]
        assert len(recs) == n_gt
        # GT masks: every instance is estimated, distances are finite, ADD-S <= ADD
        assert all(math.isfinite(r.add) and r.adds <= r.add + 1e-9 for r in recs)
        s = res.summary(mode)
        assert {"ALL", "MEAN"} <= set(s) <= {"lblock", "can", "ALL", "MEAN"}
        assert 0.0 <= s["ALL"]["auc_add_s"] <= 100.0 and s["ALL"]["lost"] == 0
    assert res.timings_ms["iterative"]["refiner"] > 0 and res.timings_ms["per-pixel"]["refiner"] == 0
    assert res.timings_ms["iterative+icp"]["icp"] > 0 and res.timings_ms["iterative+verify"]["icp"] > 0
    # GT masks hold only objects that are there: no false detections, and the report says so
    assert set(res.false_detections) == set(res.modes) - {"baseline"} and not any(res.false_detections.values())
    paths = write_reports(res, tmp_path / "out")
    assert "False detections (poses of an object the frame does not contain; not in the table): per-pixel 0," in (
        tmp_path / "out" / "results.md"
    ).read_text()
    assert [p.name for p in paths] == ["results.md", "results.csv", "results.json", "accuracy.png"]
    js = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(js["summary"]) == set(res.modes) and len(js["instances"]) == n_gt * 5
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert {r["object"] for r in rows} >= {"ALL", "MEAN"}
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| iterative | ALL |" in md and "AUC ADD(-S)" in md
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 1000


def test_cli_evaluate(setup, tmp_path, capsys):
    root, est, _ = setup
    out = tmp_path / "cli"
    rc = cli.main(["evaluate", "--dataset", str(root), "--weights", str(est), "--out", str(out), "--max-frames", "2",
                   "--no-baseline", "--no-progress", "--metric-points", "200"])  # fmt: skip
    assert rc == 0
    js = json.loads((out / "results.json").read_text())
    assert js["frames"] == 2 and list(js["summary"]) == ["per-pixel"]
    assert js["config"]["masks"] == "gt" and js["config"]["num_points"] == 64
    assert "| per-pixel | ALL |" in capsys.readouterr().out


def test_scoring_known_answers(setup):
    root, _, _ = setup
    cat = Catalog.load(root / "catalog.yaml")
    pts = {o.class_id: o.sample_points(200, seed=1) for o in cat}
    R, t = np.eye(3), np.array([0.0, 0.0, 0.6])
    mask = np.ones((4, 4), bool)
    gts = [(0, GtObject(1, R, t, mask)), (1, GtObject(2, R, t, mask))]
    res = EvalResult(config={})
    # exact pose for the lblock, a 1 cm offset for the can, nothing for a lost one
    _score(res, "m", 0, 0, gts, {0: (R, t, 0.9), 1: (R, t + [0.01, 0, 0], 0.8)}, cat, pts)
    _score(res, "m", 0, 1, gts[:1], {}, cat, pts)
    a, b, lost = res.records
    assert a.add == pytest.approx(0.0) and b.add == pytest.approx(0.01) and b.adds <= 0.01
    assert math.isinf(lost.add) and math.isinf(lost.add_s)
    s = res.summary("m")
    assert s["ALL"]["n"] == 3 and s["ALL"]["lost"] == 1
    assert s["ALL"]["add_s_2cm"] == pytest.approx(200 / 3)
    assert s["lblock"]["add_s_2cm"] == pytest.approx(50.0) and s["can"]["add_s_2cm"] == pytest.approx(100.0)
    assert s["MEAN"]["add_s_2cm"] == pytest.approx(75.0)
    # LineMOD criterion: ADD(-S) below 10 % of the object's diameter
    d_can = cat.by_name("can").diameter
    assert s["can"]["add_s_01d"] == (100.0 if b.adds < 0.1 * d_can else 0.0)
    rec = InstanceRecord("m", 0, 0, 2, "can", True, 0.1, 1.0, add=0.05, adds=0.001)
    assert rec.add_s == 0.001 and summarize([rec])["median_add_s_mm"] == pytest.approx(1.0)


def test_half_turn_misses_are_reported_with_their_axis():
    """Misses that are half turns about one object axis (an unflagged near-symmetry) are named as such."""
    from densefusion_ros.eval.evaluate import half_turn_lines

    def rec(add, angle, axis):
        return InstanceRecord("m", 0, 0, 2, "mug", False, 0.1, 1.0, add=add, adds=add, rot_err_deg=angle, rot_axis=axis)

    recs = [rec(0.05, 179.0, (0.0, 1.0, 0.0)), rec(0.05, 178.0, (0.0, -1.0, 0.0)), rec(0.03, 40.0, (1.0, 0.0, 0.0)),
            rec(0.001, 1.0, (0.0, 0.0, 1.0))]  # fmt: skip
    (text,) = [line for line in half_turn_lines(recs) if line.startswith("- ")]
    assert text == "- mug: 2 of 3 misses are turns of 150 degrees or more, 100 % of them about the object axis [0.00, 1.00, 0.00]"


def test_eval_config_from_the_command_line():
    from densefusion_ros.eval.evaluate import configure_parser

    parser = configure_parser(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--dataset", "D", "--weights", "W"])
    assert EvalConfig.from_args(args) == EvalConfig(dataset="D", weights="W", progress=True)
    cfg = EvalConfig.from_args(parser.parse_args([
        "--dataset", "D", "--weights", "W", "--split", "s", "--catalog", "C", "--refiner", "R", "--segmenter", "S",
        "--iterations", "4", "--icp", "--icp-verify", "--verify-hypotheses", "5", "--no-baseline", "--num-points", "64",
        "--metric-points", "10", "--min-visible-px", "3", "--max-frames", "7", "--device", "auto", "--seed", "2", "--no-progress",
    ]))  # fmt: skip
    assert cfg == EvalConfig(dataset="D", weights="W", split="s", catalog="C", refiner="R", segmenter="S", iterations=4, icp=True,
                             icp_verify=True, verify_hypotheses=5, baseline=False, num_points=64, metric_points=10,
                             min_visible_px=3, max_frames=7, device="auto", seed=2, progress=False)  # fmt: skip
    assert cfg.mask_source == "segmenter" and EvalConfig(dataset="D", weights="W", masks="gt", segmenter="S").mask_source == "gt"
