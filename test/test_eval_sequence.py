"""``evaluate --sequence`` on a short rendered 30 Hz sequence, with the bundled weights, in track and detect mode."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from densefusion_ros import cli
from densefusion_ros.catalog import Catalog
from densefusion_ros.data.bop import BopDataset
from densefusion_ros.eval.sequence import evaluate_sequences, to_camera
from densefusion_ros.frame import Frame
from densefusion_ros.pipeline import FrameResult, InstanceResult

REPO = Path(__file__).resolve().parents[1]
FRAMES = 6


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "ds"
    rc = cli.main(["synth", "--objects", str(REPO / "config/objects/demo.yaml"), "--out", str(out), "--split", "seq",
                   "--scenes", "1", "--frames-per-scene", str(FRAMES), "--sequence", "--seed", "2", "--quiet"])
    assert rc == 0
    return out


@pytest.mark.parametrize("mode", ["track", "detect"])
def test_sequence_report(sequence, tmp_path, mode):
    out = tmp_path / mode
    rc = cli.main(["evaluate", "--sequence", "--mode", mode, "--dataset", str(sequence), "--split", "seq",
                   "--weights", str(REPO / "models/estimator.pth"), "--refiner", str(REPO / "models/refiner.pth"),
                   "--segmenter", str(REPO / "models/segmenter.pth"), "--threads", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "sequence_results.json").read_text())
    assert report["frames"] == FRAMES and report["config"]["mode"] == mode
    pooled = report["objects"]["ALL"]
    per_object = [r for name, r in report["objects"].items() if name != "ALL"]
    assert pooled["pairs"] == sum(r["pairs"] for r in per_object) > 0
    assert pooled["wrong_published"] == sum(r["wrong_published"] for r in per_object)
    assert 0.0 <= pooled["accuracy"] <= 1.0 and pooled["pairs"] <= pooled["bop_pairs"]
    assert pooled["accuracy"] > 0.3  # the objects in view get right poses (measured: about 0.9)
    assert report["ms_first_frame_mean"] > 0 and report["ms_steady_median"] > 0
    assert (out / "sequence_results.md").read_text().startswith("# Sequences: seq")
    with open(out / "sequence_frames.csv", newline="") as f:  # one row per object and frame: the pairs, the right and the wrong
        rows = list(csv.DictReader(f))
    visible = [r for r in rows if r["visible"] == "1"]
    assert len(visible) == pooled["pairs"] and {int(r["frame"]) for r in rows} <= set(range(FRAMES))
    assert sum(r["correct"] == "1" for r in visible) == round(pooled["accuracy"] * pooled["pairs"])
    assert sum(r["wrong"] == "1" for r in rows) == pooled["wrong_published"]
    assert all(float(r["error_d"]) < 0.1 for r in rows if r["correct"] == "1")
    assert all((r["track_id"] != "") == (mode == "track") for r in rows if r["error_d"] != "")
    assert pooled["jitter_pairs"] == sum(r["jitter_mm"] != "" for r in rows) > 0  # right poses in consecutive frames wobble a little
    assert 0 <= pooled["jitter_mm_median"] <= pooled["jitter_mm_p95"] < 10


def test_frame_step_runs_every_nth_frame(sequence, tmp_path):
    """``--frame-step 2``: the tracker sees every other frame (a node keeping up with 15 of 30 frames a second), and only those are scored."""
    rc = cli.main(["evaluate", "--sequence", "--dataset", str(sequence), "--split", "seq", "--frame-step", "2",
                   "--weights", str(REPO / "models/estimator.pth"), "--refiner", str(REPO / "models/refiner.pth"),
                   "--segmenter", str(REPO / "models/segmenter.pth"), "--threads", "1", "--no-progress", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "sequence_results.json").read_text())
    assert report["frames"] == FRAMES // 2 and report["config"]["frame_step"] == 2
    assert 0 < report["objects"]["ALL"]["pairs"] < 4 * FRAMES


class _HiddenFirstFrame:
    """The rendered sequence with its first frame showing no object (its ground truth left out)."""

    def __init__(self, dataset):
        self.dataset, self.index = dataset, dataset.index

    def load_frame(self, scene_id, im_id):
        frame = self.dataset.load_frame(scene_id, im_id)
        return replace(frame, gt=[]) if im_id == min(i for _, i in self.index) else frame


def test_time_to_first_correct_pose_counts_frames_not_processed(sequence):
    """With ``frame_step`` 2 an object that comes into view on a frame the runner does not get
    (frame 1) waits from there: its first correct pose, on frame 2, is one frame late, not zero."""
    dataset = _HiddenFirstFrame(BopDataset(sequence, "seq", load_masks=False))
    truth = {frame.stamp: frame.gt for frame in (dataset.load_frame(s, i) for s, i in dataset.index)}
    catalog = Catalog.load(REPO / "config/objects/demo.yaml")

    def ground_truth_poses(frame: Frame) -> FrameResult:  # every pose right: the metric alone is under test
        poses = []
        for g in truth[frame.stamp]:
            info = catalog.by_class_id(g.class_id)
            poses.append(InstanceResult(info.name, g.class_id, 0, 0, g.R, g.t, np.array([1.0, 0, 0, 0]), 1.0, (0, 1, 0, 1), 100))
        return FrameResult(instances=poses)

    for step, wait in ((1, 0.0), (2, 1.0)):
        summary = evaluate_sequences(lambda: ground_truth_poses, dataset, catalog, frame_step=step).summary()
        seen = {name: r for name, r in summary["objects"].items() if name != "ALL" and r["pairs"]}
        assert seen and all(r["first_correct_frames"] == wait and r["accuracy"] == 1.0 for r in seen.values()), (step, seen)


@pytest.mark.parametrize(("seconds", "expected"), [(0.11, [0, 3, 5]), (0.09, [0, 2, 5])])
def test_realtime_gives_the_latest_frame_to_a_slow_runner(sequence, seconds, expected):
    """``realtime``: frame k arrives at k / 30 s; a runner that takes ``seconds`` a frame (on a clock
    it advances itself: ``clock``) gets, when done, the latest frame that arrived meanwhile (0.11 s: frames 1
    and 2 arrived while frame 0 ran, frame 3 comes next), or the next to come; the last frame always;
    only those are scored, and the report gives the share of the camera's 30 frames a second."""
    clock = [0.0]
    dataset = BopDataset(sequence, "seq", load_masks=False)
    catalog = Catalog.load(REPO / "config/objects/demo.yaml")
    stamps = sorted(dataset.load_frame(s, i).stamp for s, i in dataset.index)
    got: list[int] = []

    def slow(frame: Frame) -> FrameResult:
        got.append(stamps.index(frame.stamp))
        clock[0] += seconds
        return FrameResult()

    result = evaluate_sequences(lambda: slow, dataset, catalog, realtime=True, clock=lambda: clock[0])
    assert got == expected
    summary = result.summary()
    assert summary["frames"] == len(expected) and summary["camera_frames"] == FRAMES
    assert summary["processed_hz"] == pytest.approx(30.0 * len(expected) / FRAMES)
    assert {row["frame"] for row in result.rows} == set(expected)
    with pytest.raises(ValueError, match="realtime"):
        evaluate_sequences(lambda: slow, dataset, catalog, realtime=True, frame_step=2)


def test_jitter_is_the_change_of_a_tracks_error(sequence):
    """Poses 1 mm off the truth along the object's x axis, the side flipping every frame: each pose
    is right, and the jitter between frames of one track is the 2 mm between the two errors, however
    the object and the camera move. A constant error has none, and a pose of a new track starts over."""
    dataset = BopDataset(sequence, "seq", load_masks=False)
    truth = {frame.stamp: (k, frame.gt) for k, frame in enumerate(dataset.load_frame(s, i) for s, i in dataset.index)}
    catalog = Catalog.load(REPO / "config/objects/demo.yaml")

    def offset_poses(side, track):
        def run(frame: Frame) -> FrameResult:
            k, gts = truth[frame.stamp]
            poses = []
            for g in gts:
                info = catalog.by_class_id(g.class_id)
                t = g.t + g.R @ np.array([side(k) * 1e-3, 0.0, 0.0])
                poses.append(InstanceResult(info.name, g.class_id, 0, 0, g.R, t, np.array([1.0, 0, 0, 0]), 1.0, (0, 1, 0, 1), 100, track_id=track(k)))
            return FrameResult(instances=poses)

        return run

    def jitter(side, track) -> tuple[dict, list[dict]]:
        result = evaluate_sequences(lambda: offset_poses(side, track), dataset, catalog)
        rows = [r for r in result.rows if r["object"] != "torus"]  # the torus' ADD-S: the closest point, not the same one
        return result.summary()["objects"], rows

    objects, rows = jitter(lambda k: (-1) ** k, lambda k: 7)
    seen = {(r["object"], r["frame"]) for r in rows}
    followed = [r for r in rows if (r["object"], r["frame"] - 1) in seen]
    assert followed and all(r["jitter_mm"] == pytest.approx(2.0, abs=1e-6) for r in followed)
    assert all(r["jitter_mm"] == "" for r in rows if r not in followed)  # the first frame of each object has none
    assert sum(objects[name]["jitter_pairs"] for name in objects if name not in ("ALL", "torus")) == len(followed)
    objects, rows = jitter(lambda k: 1.0, lambda k: 7)
    assert objects["ALL"]["jitter_pairs"] > 0 and objects["ALL"]["jitter_mm_p95"] == pytest.approx(0.0, abs=1e-6)
    objects, rows = jitter(lambda k: (-1) ** k, lambda k: k)  # a new track every frame
    assert objects["ALL"]["jitter_pairs"] == 0 and all(r["jitter_mm"] == "" for r in rows)


def test_realtime_scores_the_poses_a_robot_holds(sequence):
    """``realtime`` also scores, at every camera frame, the poses a robot holds: the latest result
    that has arrived, moved from its frame's camera to this one through the true camera poses. A
    runner that returns the true poses after 0.11 s (on a clock it advances itself) is right on
    every frame it gets, but holds nothing until 0.11 s (frames 0-3: before its first pose) and frame 0's poses at frames
    4 and 5 (frame 3's arrive at 0.22 s, after the last frame): right there, once moved with the
    camera, which by then has moved too far for them to be right where they were."""
    from densefusion_ros.eval import sequence as sequence_module
    from densefusion_ros.eval.metrics import add_or_adds

    clock = [0.0]
    dataset = BopDataset(sequence, "seq", load_masks=False)
    catalog = Catalog.load(REPO / "config/objects/demo.yaml")
    frames = [dataset.load_frame(s, i) for s, i in sorted(dataset.index)]
    truth = {frame.stamp: frame.gt for frame in frames}

    def slow_truth(frame: Frame) -> FrameResult:
        clock[0] += 0.11
        return FrameResult(instances=[
            InstanceResult(catalog.by_class_id(g.class_id).name, g.class_id, 0, 0, g.R, g.t, np.array([1.0, 0, 0, 0]), 1.0, (0, 1, 0, 1), 100)
            for g in truth[frame.stamp]])  # fmt: skip

    summary = evaluate_sequences(lambda: slow_truth, dataset, catalog, realtime=True, clock=lambda: clock[0]).summary()
    pooled = summary["objects"]["ALL"]
    assert pooled["accuracy"] == 1.0 and pooled["wrong_published"] == 0  # scored on the frames it got
    points = {info.class_id: info.sample_points(1000) for info in catalog}
    visible = [sum(sequence_module._visible(points[g.class_id], g, f, 0.1) for g in f.gt) for f in frames]
    assert pooled["held_accuracy"] == pytest.approx(sum(visible[4:]) / sum(visible)) and pooled["held_wrong"] == 0
    assert pooled["held_none"] == pooled["held_none_first"] == sum(visible[:4])  # all before the first pose: none lost after it
    scene_id, first = sorted(dataset.index)[0]
    moved = max(  # the camera's motion from frame 0 to frame 4 alone puts a pose held in place far off
        add_or_adds(g.R, g.t, h.R, h.t, points[g.class_id], False) / catalog.by_class_id(g.class_id).diameter
        for g, h in zip(frames[0].gt, frames[4].gt)
    )  # fmt: skip
    assert moved > 0.1 and dataset.world_to_camera(scene_id, first) is not None


def test_realtime_counts_the_held_misses_after_the_first_pose(sequence):
    """A visible object without a held pose counts before its class's first held pose or after it.
    A runner that returns the true poses at once, but none for frame 2, is held nothing at frame 0
    (before the first: the first result arrives after it) and nothing at frame 3 (after: frame 2's
    empty result is the latest there)."""
    from densefusion_ros.eval import sequence as sequence_module

    dataset = BopDataset(sequence, "seq", load_masks=False)
    catalog = Catalog.load(REPO / "config/objects/demo.yaml")
    frames = [dataset.load_frame(s, i) for s, i in sorted(dataset.index)]
    truth = {frame.stamp: frame.gt for frame in frames}

    def truth_but_frame_2(frame: Frame) -> FrameResult:
        return FrameResult(instances=[] if frame.stamp == frames[2].stamp else [
            InstanceResult(catalog.by_class_id(g.class_id).name, g.class_id, 0, 0, g.R, g.t, np.array([1.0, 0, 0, 0]), 1.0, (0, 1, 0, 1), 100)
            for g in truth[frame.stamp]])  # fmt: skip

    pooled = evaluate_sequences(lambda: truth_but_frame_2, dataset, catalog, realtime=True, clock=lambda: 0.0).summary()["objects"]["ALL"]
    points = {info.class_id: info.sample_points(1000) for info in catalog}
    visible = [sum(sequence_module._visible(points[g.class_id], g, f, 0.1) for g in f.gt) for f in frames]
    held_before = {int(g.class_id) for f in frames[:2] for g in f.gt}  # held at frames 1 and 2
    assert {int(g.class_id) for g in frames[3].gt} <= held_before and visible[0] > 0 and visible[3] > 0
    assert pooled["held_none_first"] == visible[0]
    assert pooled["held_none_after"] == visible[3]


def test_a_held_pose_moves_with_the_camera():
    """``to_camera``: a still object's pose in a camera that then turned 60 degrees and moved is
    the pose of the same world points in the camera now."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    world_to = [(Rotation.from_euler("xyz", a, degrees=True).as_matrix(), np.array(t)) for a, t in
                (((10, -20, 30), (0.1, 0.0, 0.5)), ((70, 5, -30), (-0.2, 0.1, 0.7)))]  # fmt: skip
    R_obj, t_obj = Rotation.from_euler("xyz", (40, 10, -60), degrees=True).as_matrix(), np.array([0.3, -0.1, 0.2])  # object -> world
    X = rng.normal(size=(20, 3)) * 0.05  # object points
    posed = [(R_c @ R_obj, R_c @ t_obj + t_c) for R_c, t_c in world_to]  # object -> each camera
    R, t = to_camera(*posed[0], world_to[0], world_to[1])
    np.testing.assert_allclose(X @ R.T + t, X @ posed[1][0].T + posed[1][1], atol=1e-12)
    np.testing.assert_allclose(R, posed[1][0], atol=1e-12)
