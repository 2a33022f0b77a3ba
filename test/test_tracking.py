"""The tracker's state machine on rendered depth: acquire, follow, lose, re-acquire; stable ids.

Real parts: a random-weight compact estimator and refiner (the acquisition path's networks are
far off, as untrained ones are; verification finds the pose from the depth), the batched
verification and ICP, depth rendered from a dense surface sample of an asymmetric shape.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import Frame
from densefusion_ros.geometry import share_in_image
from densefusion_ros.icp import IcpOptions, IcpResult
from densefusion_ros.models import build_estimator, build_refiner
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.tracking import Tracker, TrackerOptions

from helpers import chair_object, render_depth

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
SHAPE = (240, 320)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    info = chair_object(tmp_path_factory.mktemp("mesh"))
    catalog = Catalog([info])
    torch.manual_seed(0)
    config = PipelineConfig(num_points=100, seed=0, min_points=5, icp="verify", icp_options=IcpOptions(max_distance=0.015))
    pipeline = Pipeline(build_estimator(num_objects=1, backbone="compact"), catalog, config, refiner=build_refiner(num_objects=1))
    return pipeline, info.sample_points(200_000, seed=1)


def _pose(k: int, x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The chair at frame ``k`` of a slow push: 2 mm and 1 degree per frame (60 mm/s, 30 deg/s at 30 Hz)."""
    R = Rotation.from_euler("xyz", [30, -20, 15 + k], degrees=True).as_matrix()
    return R, np.array([x0 + 0.002 * k, y0, 0.5])


def _frame(surface, poses) -> Frame:
    depth, mask = np.full(SHAPE, 0.8), np.zeros(SHAPE, bool)
    for R, t in poses:
        depth, m = render_depth(surface, R, t, K, shape=SHAPE, depth=depth)
        mask = (mask & ~m) | m
    rgb = np.full(SHAPE + (3,), 128, np.uint8)
    return Frame(rgb=rgb, depth_m=depth.astype(np.float32), K=K, masks={1: mask} if mask.any() else {})


def _board(rows: slice, cols: slice, z: float = 0.5) -> np.ndarray:
    """Points of a flat board ``z`` metres in front of the camera that covers the pixels ``rows`` x ``cols``."""
    r, c = np.mgrid[rows, cols]
    return np.stack([(c.ravel() - K[0, 2]) / K[0, 0] * z, (r.ravel() - K[1, 2]) / K[1, 1] * z, np.full(r.size, z)], 1)


def _close(inst, R, t) -> bool:
    angle = np.degrees(Rotation.from_matrix(inst.R @ R.T).magnitude())
    return angle < 3.0 and np.linalg.norm(inst.t - t) < 4e-3


def test_acquire_follow_lose_and_reacquire_with_the_same_id(setup):
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    ids = []
    for k in range(6):  # acquire, then follow the push
        R, t = _pose(k)
        res = tracker(_frame(surface, [(R, t)]))
        assert res.ok and len(res.instances) == 1, (k, res.skipped)
        assert _close(res.instances[0], R, t), k
        ids.append(res.instances[0].track_id)
    assert ids == [0] * 6
    assert res.timings_ms["track"] > 0 and res.timings_ms["estimator"] == 0  # followed: no network ran
    empty = tracker(_frame(surface, []))  # the object is gone (nothing in front of the wall)
    assert empty.ok and empty.instances == []
    assert tracker.stats()["tracks"] == 0 and tracker.stats()["lost"] == 1
    R, t = _pose(7)
    back = tracker(_frame(surface, [(R, t)]))
    assert [i.track_id for i in back.instances] == [0] and _close(back.instances[0], R, t)
    assert tracker.stats()["reacquisitions"] == 1
    tracker.reset()
    assert tracker.stats() == {"tracks": 0, "lost": 0, "acquisitions": 0, "reacquisitions": 0, "reacquisitions_per_minute": 0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_tracker_runs_on_cuda_as_on_the_cpu(setup, tmp_path):
    """The same state machine on the pipeline's CUDA device: every tensor of the follow, the
    check, the re-check and the acquisition is made there (the same random networks as ``setup``)."""
    _, surface = setup
    info = chair_object(tmp_path)
    torch.manual_seed(0)
    config = PipelineConfig(num_points=100, seed=0, min_points=5, icp="verify", icp_options=IcpOptions(max_distance=0.015), device="cuda")
    pipeline = Pipeline(build_estimator(num_objects=1, backbone="compact"), Catalog([info]), config, refiner=build_refiner(num_objects=1))
    tracker = Tracker(pipeline)
    for k in range(6):
        R, t = _pose(k)
        res = tracker(_frame(surface, [(R, t)]))
        assert res.ok and [i.track_id for i in res.instances] == [0], (k, res.skipped)
        assert _close(res.instances[0], R, t), k
    assert tracker(_frame(surface, [])).instances == [] and tracker.stats()["lost"] == 1


def test_two_instances_of_one_class_keep_their_ids(setup):
    pipeline, surface = setup
    tracker = Tracker(pipeline, acquire_per_frame=1)
    seen: dict[int, list[float]] = {}
    for k in range(5):
        left, right = _pose(k, x0=-0.08), _pose(k, x0=0.08, y0=0.01)
        res = tracker(_frame(surface, [left, right]))
        for inst in res.instances:
            seen.setdefault(inst.track_id, []).append(float(inst.t[0]))
            assert _close(inst, *(left if inst.t[0] < 0 else right)), (k, inst.track_id)
        assert len(res.instances) == min(k + 1, 2)  # one acquisition per frame
    assert sorted(seen) == [0, 1]
    for xs in seen.values():  # each id stays on its own side
        assert all(x < 0 for x in xs) or all(x > 0 for x in xs)


def test_a_track_whose_object_left_does_not_slide_onto_another_of_its_class(setup):
    """Two chairs 14 cm apart are followed and one leaves the view: its failed follow does not slide
    onto the other chair (a followed track of its class covers it), so it is lost and coasts, the
    other keeps its id, and the chair that comes back gets its id back."""
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    for k in range(4):
        res = tracker(_frame(surface, [_pose(k, x0=-0.07), _pose(k, x0=0.07, y0=0.01)]))
    x = {i.track_id: float(i.t[0]) for i in res.instances}
    assert len(x) == 2
    left, right = sorted(x, key=x.get)
    res = tracker(_frame(surface, [_pose(4, x0=-0.07)]))
    assert [i.track_id for i in res.instances] == [left] and float(res.instances[0].t[0]) < 0
    assert {t.track_id: t.state for t in tracker.tracks} == {left: "tracking", right: "lost"}
    res = tracker(_frame(surface, [_pose(5, x0=-0.07), _pose(5, x0=0.07, y0=0.01)]))
    assert {i.track_id: float(i.t[0]) > 0 for i in res.instances} == {left: False, right: True}


def test_an_acquisition_on_a_followed_object_makes_its_class_wait(setup):
    """A component that its track explains too little of (here every one: ``explained_share`` above
    1) is acquired again, and the pose found is the followed track's: that acquisition counts as
    failed, so no track is added and the class waits 2, then 4 frames before its next try."""
    pipeline, surface = setup
    tracker = Tracker(pipeline, explained_share=1.01)
    ran = []
    for k in range(8):
        res = tracker(_frame(surface, [_pose(k)]))
        assert [i.track_id for i in res.instances] == [0], k
        ran.append(res.timings_ms["estimator"] > 0)
    assert ran == [True, True, False, True, False, False, False, True]
    assert tracker.stats()["acquisitions"] == 1 and [t.track_id for t in tracker.tracks] == [0]


def test_no_pose_for_an_object_that_left_the_view(setup):
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    R, t = _pose(0)
    assert len(tracker(_frame(surface, [(R, t)])).instances) == 1
    for shift in (0.15, 0.30, 0.45):  # out through the right edge of the image
        res = tracker(_frame(surface, [(R, t + np.array([shift, 0, 0]))]))
        for inst in res.instances:  # while part of it shows, a pose must still be right
            assert _close(inst, R, t + np.array([shift, 0, 0]))
    assert res.instances == [] and tracker.stats()["tracks"] == 0


def test_a_pose_that_fails_the_depth_check_is_not_published(setup):
    """The followed object is swapped for a flat board of another shape under the same class mask:
    ICP cannot fit the chair to it, the check fails, nothing is published and the track is lost."""
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    R, t = _pose(0)
    assert len(tracker(_frame(surface, [(R, t)])).instances) == 1
    frame = _frame(_board(slice(60, 180), slice(100, 220)), [(np.eye(3), np.zeros(3))])
    res = tracker(frame)
    assert res.ok and res.instances == []  # neither the followed pose nor a new acquisition passes
    assert tracker.stats()["tracks"] == 0


def test_an_acquisition_is_held_to_the_violation_of_the_points_the_camera_would_see(setup):
    """``max_seen_violation`` is a term of an acquisition's check (``verify.seen_violation``; its
    measure is tested in test_verify.py): the true pose, nothing of it in front of the depth, is
    acquired; below any pose's share (a negative limit) it is not. A followed track is not held to it."""
    pipeline, surface = setup
    frames = [_frame(surface, [_pose(k)]) for k in range(2)]
    strict = Tracker(pipeline, max_seen_violation=-1.0)
    assert strict(frames[0]).instances == [] and strict.stats()["tracks"] == 0
    tracker = Tracker(pipeline)
    assert len(tracker(frames[0]).instances) == 1
    tracker.options.max_seen_violation = -1.0
    assert len(tracker(frames[1]).instances) == 1


def test_a_wrong_turn_is_corrected_by_the_turn_recheck_and_the_track_kept(setup):
    """A followed pose a quarter turn off (as a mug first seen with its handle hidden can be): the
    turn re-check finds the turn that explains the depth, the track keeps its id, and the next
    prediction is not thrown off by the correction."""
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    R, t = _pose(0)
    assert [i.track_id for i in tracker(_frame(surface, [(R, t)])).instances] == [0]
    track = tracker.tracks[0]
    centre = pipeline.model_geometry(track.info).centre.numpy().astype(np.float64)
    turn = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    track.R, track.t = R @ turn, t + R @ centre - R @ turn @ centre  # the same centre, turned
    right = []
    for k in range(1, 6):
        R, t = _pose(k)
        res = tracker(_frame(surface, [(R, t)]))
        assert [i.track_id for i in res.instances] == [0], (k, res.skipped)
        right.append(_close(res.instances[0], R, t))
    assert right[1:] == [True] * 4, right  # right from the second frame on (measured: from the second)
    assert tracker.stats()["acquisitions"] == 1  # corrected while followed, not acquired again


def test_the_turn_recheck_concludes_only_when_a_turn_leads(setup, monkeypatch):
    """A track on its object: no hypothesis of the re-check leads its pose, so the climb and the
    final ICP are skipped, frame after frame; a track a quarter turn off: a turn leads, they run,
    and the pose is corrected."""
    import densefusion_ros.tracking as tracking

    concluded, proposed = [], []
    real_conclude, real_propose = tracking.conclude, tracking.propose
    monkeypatch.setattr(tracking, "conclude", lambda *a, **k: concluded.append(1) or real_conclude(*a, **k))
    monkeypatch.setattr(tracking, "propose", lambda *a, **k: proposed.append(real_propose(*a, **k)) or proposed[-1])
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    for k in range(4):
        R, t = _pose(k)
        (inst,) = tracker(_frame(surface, [(R, t)])).instances
        assert _close(inst, R, t), k
    assert len(proposed) == 3 and all(len(h.score) for h in proposed)  # frames 1-3 re-checked, with hypotheses
    assert concluded == []
    track = tracker.tracks[0]
    centre = pipeline.model_geometry(track.info).centre.numpy().astype(np.float64)
    turn = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    track.R, track.t = R @ turn, t + R @ centre - R @ turn @ centre
    R, t = _pose(4)
    (inst,) = tracker(_frame(surface, [(R, t)])).instances
    assert concluded == [1] and _close(inst, R, t)


def test_a_track_leaving_the_view_is_not_rechecked_once_mostly_outside(setup, monkeypatch):
    """The chair leaves through the image's right edge and is followed throughout; the turn
    re-check (one verification from all turns) runs on it only while at least ``verify_min_in_view`` of
    it is inside the image: on a sliver it would act as an acquisition (a mug leaving the view turned
    to its twin). With ``verify_min_in_view=0`` it runs in every frame after the first."""
    import densefusion_ros.tracking as tracking

    proposed = []
    real_propose = tracking.propose
    monkeypatch.setattr(tracking, "propose", lambda *a, **k: proposed.append(1) or real_propose(*a, **k))
    pipeline, surface = setup
    R, _ = _pose(0)
    xs = np.array([0.0, 0.04, 0.08, 0.12, 0.15, 0.18, 0.2, 0.22])
    inside = [share_in_image(surface[::100], R, np.array([x, 0.0, 0.5]), K, SHAPE) for x in xs]
    limit = IcpOptions().verify_min_in_view
    assert inside[1] > limit > inside[-1]
    for options, expected in ((limit, [s >= limit for s in inside[1:]]), (0.0, [True] * (len(xs) - 1))):
        monkeypatch.setattr(pipeline.config.icp_options, "verify_min_in_view", options)
        tracker, rechecked = Tracker(pipeline), []
        for k, x in enumerate(xs):
            t = np.array([x, 0.0, 0.5])
            before = len(proposed)
            (inst,) = tracker(_frame(surface, [(R, t)])).instances
            assert inst.track_id == 0 and _close(inst, R, t), (options, x)
            if k:
                rechecked.append(len(proposed) > before)
        assert rechecked == expected, options


def test_the_silhouette_is_the_whole_images_dilation(setup):
    """The silhouette, dilated only inside its box, has the pixels of the whole image's dilation,
    at the image border too, and is all False outside its box."""
    pipeline, surface = setup
    tracker = Tracker(pipeline)
    info = next(iter(pipeline.catalog))
    frame = _frame(surface, [])
    m = tracker.options.margin_px
    points = pipeline.model_geometry(info).points.numpy().astype(np.float64)
    for x in (-0.2, -0.15, 0.0, 0.15, 0.2, 0.5):
        R, t = _pose(0, x0=x, y0=0.1 * x)
        X = points @ R.T + t
        uv = np.round(X[:, :2] / X[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]).astype(int)
        uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < SHAPE[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < SHAPE[0])]
        dots = np.zeros(SHAPE, np.uint8)
        dots[uv[:, 1], uv[:, 0]] = 1
        expected = cv2.dilate(dots, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * m + 1, 2 * m + 1))) != 0
        silhouette, box = tracker._silhouette(info, R, t, frame)
        assert np.array_equal(silhouette, expected), x
        outside = silhouette.copy()
        outside[box] = False
        assert not outside.any(), x


def test_a_track_that_slides_off_is_recovered_in_place_not_acquired_again(setup):
    """Without its follow ICP (0 steps) a track stays at its prediction, which a sudden turn leaves
    failing the check: the local verification from the prediction finds the pose again and the
    track goes on under its id, with no acquisition; without ``recover`` it is lost instead."""
    pipeline, surface = setup
    for recover in (True, False):
        tracker = Tracker(pipeline, follow_iterations=0, recheck_turns=False, recover=recover, climb_violation=1.0)  # the climb alone also finds it
        R, t = _pose(0)
        assert [i.track_id for i in tracker(_frame(surface, [(R, t)])).instances] == [0]
        turned = Rotation.from_euler("z", 12, degrees=True).as_matrix() @ R
        res = tracker(_frame(surface, [(turned, t)]))
        if recover:
            assert [i.track_id for i in res.instances] == [0] and _close(res.instances[0], turned, t)
            assert res.timings_ms["estimator"] == 0 and tracker.stats()["acquisitions"] == 1
        else:
            assert tracker.stats()["reacquisitions"] + tracker.stats()["lost"] == 1  # lost, maybe acquired again


def test_a_track_less_than_min_in_view_inside_the_image_is_not_recovered(setup, monkeypatch):
    """The sudden turn above, with ``verify_min_in_view`` raised past the share of the chair inside
    the image (as the node's parameter ``min_in_view`` is set at run time): the failing track gets no
    local verification and is lost, and the chair is not acquired again either."""
    pipeline, surface = setup
    tracker = Tracker(pipeline, follow_iterations=0, recheck_turns=False, climb_violation=1.0)
    R, t = _pose(0)
    assert [i.track_id for i in tracker(_frame(surface, [(R, t)])).instances] == [0]
    monkeypatch.setattr(pipeline.config.icp_options, "verify_min_in_view", 1.01)  # no pose is that much inside the image
    turned = Rotation.from_euler("z", 12, degrees=True).as_matrix() @ R
    res = tracker(_frame(surface, [(turned, t)]))
    assert res.instances == [] and tracker.stats()["lost"] == 1
    assert any("mostly outside the image" in why for _, why in res.skipped), res.skipped


def test_a_jump_between_processed_frames_is_followed_by_sliding_onto_the_mask(setup):
    """A node that drops frames sees the chair 6 cm (60 px) from where its motion model predicts
    it, five times the silhouette's margin: the prediction slides over the class mask to where the
    chair shows, and the track follows it under its id with no network run. With ``search_px=0``
    the track is lost and the class acquired again. The turn re-check, the recovery and the climb
    are off: each of them can find the chair from there too, at tens of times the cost."""
    pipeline, surface = setup
    R, t = _pose(0)
    moved = t + np.array([0.06, 0.0, 0.0])
    for search_px, followed in ((TrackerOptions().search_px, True), (0, False)):
        tracker = Tracker(pipeline, search_px=search_px, recheck_turns=False, recover=False, climb_violation=1.0)
        assert [i.track_id for i in tracker(_frame(surface, [(R, t)])).instances] == [0]
        res = tracker(_frame(surface, [(R, moved)]))
        if followed:
            assert [i.track_id for i in res.instances] == [0] and _close(res.instances[0], R, moved)
            assert res.timings_ms["estimator"] == 0 and tracker.stats()["acquisitions"] == 1
        else:
            assert res.timings_ms["estimator"] > 0 and tracker.stats()["reacquisitions"] + tracker.stats()["lost"] >= 1


def test_the_motion_predicted_over_dropped_frames_is_damped_per_frame(setup):
    """Frames 1/30 s apart predict the last motion scaled by the intervals' ratio alone; an interval
    of four camera frames after one of one predicts 4 x the motion, damped three more times. The
    camera frames are counted at ``camera_hz``."""
    pipeline, _ = setup
    tracker = Tracker(pipeline)
    damping = tracker.options.velocity_damping
    scales = [tracker._interval_ratio(1.0 + k / 30) for k in (0, 1, 2, 6)]
    assert scales[:3] == pytest.approx([1.0, 1.0, 1.0])
    assert scales[3] == pytest.approx(4 * damping**3)
    slow = Tracker(pipeline, camera_hz=15.0)  # a 15 Hz camera: 1/15 s is one camera frame, 1/5 s three
    scales = [slow._interval_ratio(1.0 + k / 15) for k in (0, 1, 2, 5)]
    assert scales[:3] == pytest.approx([1.0, 1.0, 1.0]) and scales[3] == pytest.approx(3 * damping**2)
    from_zero = Tracker(pipeline)  # stamps from 0 (as synth sequences start), every fourth frame: a stamp of 0 is a stamp
    scales = [from_zero._interval_ratio(k / 30) for k in (0, 4, 8)]
    assert scales == pytest.approx([1.0, 1.0, damping**3])
    unset = Tracker(pipeline)  # frames without stamps: no intervals, the motion as measured
    assert [unset._interval_ratio(0.0) for _ in range(3)] == [1.0, 1.0, 1.0]


def test_a_tracker_behind_the_camera_does_not_recheck_turns(setup):
    """The turn re-check runs in frames at most ``recheck_max_interval`` (1.5) camera frames after
    the last one processed, and where the stamps give no interval; a tracker that falls behind the
    camera (frames four camera frames apart) follows without it, and still follows."""
    pipeline, surface = setup
    for camera_frames, stamped, rechecked in (((0, 1, 2, 6, 10, 11), True, [1, 2, 5]), ((0, 1, 2, 3), False, [1, 2, 3])):
        tracker = Tracker(pipeline)
        original, calls = tracker._recheck, []
        tracker._recheck = lambda *args, calls=calls, original=original: calls.append(tracker._frame_index - 1) or original(*args)
        for k in camera_frames:  # processed frames 0, 1, 2, ...
            res = tracker(replace(_frame(surface, [_pose(k)]), stamp=k / 30 if stamped else 0.0))
            assert [i.track_id for i in res.instances] == [0] and _close(res.instances[0], *_pose(k)), (camera_frames, k, res.skipped)
        assert calls == rechecked, camera_frames
    assert not Tracker(pipeline, recheck_max_interval=1.5, recheck_turns=False)._rechecks()


def test_a_followed_pose_in_seen_through_space_climbs_back_onto_the_object(setup):
    """A followed pose turned a few degrees, parts of it where the camera sees the background
    through them, that still passes the check (as a mug drifting about its axis does): it climbs
    the score back to the object within the frame; with ``climb_violation=1`` it stays off."""
    pipeline, surface = setup
    R, t = _pose(0)
    frame = _frame(surface, [(R, t)])
    for climb_violation in (TrackerOptions().climb_violation, 1.0):
        tracker = Tracker(pipeline, follow_iterations=0, recheck_turns=False, recover=False, climb_violation=climb_violation)
        assert [i.track_id for i in tracker(frame).instances] == [0]
        track = tracker.tracks[0]
        centre = pipeline.model_geometry(track.info).centre.numpy().astype(np.float64)
        turn = Rotation.from_euler("x", 8, degrees=True).as_matrix()
        track.R, track.t = R @ turn, t + R @ centre - R @ turn @ centre
        track.velocity = (np.eye(3), np.zeros(3))
        (inst,) = tracker(frame).instances
        assert inst.track_id == 0
        angle = np.degrees(Rotation.from_matrix(inst.R @ R.T).magnitude())
        if climb_violation < 1.0:
            assert angle < 2.0 and np.linalg.norm(inst.t - t) < 6e-3, (angle, inst.t - t)
        else:
            assert angle > 7.0, angle


def test_an_acquired_pose_in_seen_through_space_climbs_onto_the_object(setup, monkeypatch):
    """An acquisition 6 mm beside the object (as verification leaves a torus pulled toward a box
    of its colour that touches it), the background seen through its edge: it fails the check,
    climbs the score without its coverage term (the distractor's pixels would pull it back) onto
    the object, and is published from there; with ``climb_violation=1`` (no climb) it is refused."""
    pipeline, surface = setup
    run = Pipeline.__call__

    def beside(self, frame):
        res = run(self, frame)
        res.instances = [replace(i, t=i.t + np.array([0.006, 0.0, 0.0])) for i in res.instances]
        return res

    monkeypatch.setattr(Pipeline, "__call__", beside)
    R, t = _pose(0)
    (inst,) = Tracker(pipeline)(_frame(surface, [(R, t)])).instances
    angle = np.degrees(Rotation.from_matrix(inst.R @ R.T).magnitude())
    assert angle < 3.0 and abs(inst.t[0] - t[0]) < 2e-3 and np.linalg.norm(inst.t - t) < 6e-3, (angle, inst.t - t)
    assert Tracker(pipeline, climb_violation=1.0)(_frame(surface, [(R, t)])).instances == []  # no climb: the check refuses it


def test_an_object_mostly_outside_the_image_is_acquired_once_enough_of_it_shows(setup, monkeypatch):
    """The chair comes in through the image's right edge, its verification giving the true pose
    (``verify_instances`` replaced): at 7 % of it inside the image the pipeline does not publish
    the pose (``verify_min_in_view``), though it passes the depth check (a sliver at the border fits
    any surface of its colour), so the tracker does not acquire it; it is acquired as soon as 23 %
    shows. With ``verify_min_in_view=0`` the sliver is published and acquired."""
    import densefusion_ros.pipeline as pipeline_module

    pipeline, surface = setup
    truth = {}

    def true_pose(inputs, evidence, options):
        return [IcpResult(truth["R"], truth["t"], fitness=1.0, rmse=1e-3, violating=0.0) for _ in inputs]

    monkeypatch.setattr(pipeline_module, "verify_instances", true_pose)
    R, _ = _pose(0)
    points = surface[::100]
    for x, in_view in ((0.22, 0.07), (0.20, 0.23)):
        truth.update(R=R, t=np.array([x, 0.0, 0.5]))
        assert share_in_image(points, R, truth["t"], K, SHAPE) == pytest.approx(in_view, abs=0.02)
    tracker = Tracker(pipeline)
    truth["t"] = np.array([0.22, 0.0, 0.5])
    sliver = _frame(surface, [(R, truth["t"])])
    res = pipeline(sliver)
    assert res.instances == [] and any("mostly outside the image" in why for _, why in res.skipped), res.skipped
    assert tracker(sliver).instances == []
    truth["t"] = np.array([0.20, 0.0, 0.5])
    (inst,) = tracker(_frame(surface, [(R, truth["t"])])).instances  # grown past regrow_share: tried at once
    assert inst.track_id == 0 and _close(inst, R, truth["t"])
    monkeypatch.setattr(pipeline.config.icp_options, "verify_min_in_view", 0.0)
    truth["t"] = np.array([0.22, 0.0, 0.5])
    (inst,) = Tracker(pipeline)(sliver).instances
    assert _close(inst, R, truth["t"])


def test_a_coasting_track_is_recovered_where_it_coasted_to(setup):
    """An object hidden for a frame comes back turned 12 degrees: without its follow ICP (0 steps)
    the coasting track's prediction fails the check, and the local verification from it finds the
    object under its id with no acquisition. Without ``recover``, or with a coasting track's bound
    (``recover_coverage``) out of reach, the class is acquired again."""
    pipeline, surface = setup
    R, t = _pose(0)
    turned = Rotation.from_euler("z", 12, degrees=True).as_matrix() @ R
    for options, recovered in (({}, True), ({"recover": False}, False), ({"recover_coverage": 1.01}, False)):
        tracker = Tracker(pipeline, follow_iterations=0, recheck_turns=False, climb_violation=1.0, **options)
        assert [i.track_id for i in tracker(_frame(surface, [(R, t)])).instances] == [0]
        assert tracker(_frame(surface, [])).instances == [] and tracker.stats()["lost"] == 1
        res = tracker(_frame(surface, [(turned, t)]))
        if recovered:
            assert [i.track_id for i in res.instances] == [0] and _close(res.instances[0], turned, t)
            stats = tracker.stats()
            assert res.timings_ms["estimator"] == 0 and (stats["acquisitions"], stats["reacquisitions"], stats["lost"]) == (1, 1, 0)
        else:
            assert res.timings_ms["estimator"] > 0, options  # not found where it coasted to: acquired again


def test_a_class_waiting_after_a_failed_acquisition_tries_a_grown_component_at_once(setup):
    """A small board under the class mask fails its acquisition and the class waits before its next
    try; in the next frame the object shows beside it, a component over ``regrow_share`` times the
    pixels tried, and is acquired at once; a class that always waits acquires it a frame later."""
    pipeline, surface = setup
    board = _board(slice(15, 45), slice(265, 295))
    still = (np.eye(3), np.zeros(3))
    R, t = _pose(0)
    both = _frame(surface, [(R, t)])
    board_depth, board_mask = render_depth(board, *still, K, shape=SHAPE, depth=both.depth_m.astype(np.float64))
    object_pixels = int(both.masks[1].sum())
    both.depth_m[:], both.masks[1] = board_depth, both.masks[1] | board_mask
    assert cv2.connectedComponents(both.masks[1].astype(np.uint8))[0] == 3  # background, board, object
    assert object_pixels > 2 * TrackerOptions().regrow_share * board_mask.sum()
    for regrow_share, found in ((TrackerOptions().regrow_share, [1, 1]), (1e9, [0, 1])):
        tracker = Tracker(pipeline, regrow_share=regrow_share)
        assert tracker(_frame(board, [still])).instances == []  # the board fails: the class waits 2 frames
        assert [len(tracker(both).instances) for _ in range(2)] == found, regrow_share


def test_a_distractor_touching_the_object_in_the_image_is_left_out_of_its_check(setup):
    """A board of the object's class colour 20 cm behind it joins its mask component: checked against
    the whole component a right pose covers too little of it and nothing is published; the check
    against what the object can occupy (``reach_margin``) acquires and follows it."""
    pipeline, surface = setup
    frames = []
    for k in range(3):
        frame = _frame(surface, [_pose(k)])
        board = _board(slice(100, 140), slice(180, 300), z=0.7)
        board_depth, board_mask = render_depth(board, np.eye(3), np.zeros(3), K, shape=SHAPE, depth=frame.depth_m.astype(np.float64))
        frame.depth_m[:], frame.masks[1] = board_depth, frame.masks[1] | board_mask
        assert cv2.connectedComponents(frame.masks[1].astype(np.uint8))[0] == 2  # background, object and board as one
        frames.append(frame)
    for reach_margin in (TrackerOptions().reach_margin, None):
        tracker = Tracker(pipeline, reach_margin=reach_margin)
        results = [tracker(frame).instances for frame in frames]
        if reach_margin is None:
            assert results == [[], [], []]
        else:
            assert [[i.track_id for i in r] for r in results] == [[0], [0], [0]]
            assert all(_close(r[0], *_pose(k)) for k, r in enumerate(results))


def test_a_class_tries_its_other_component_after_a_distractor_failed(setup):
    """A board of the object's class colour, larger than the object and apart from it, fails its
    acquisition; when the class's wait ends, its next try takes the component not yet tried (the
    object) instead of the largest one again, which would fail every time."""
    pipeline, surface = setup
    R, t = _pose(0)
    frame = _frame(surface, [(R, t)])
    board = _board(slice(0, 240), slice(240, 320), z=0.7)
    board_depth, board_mask = render_depth(board, np.eye(3), np.zeros(3), K, shape=SHAPE, depth=frame.depth_m.astype(np.float64))
    object_pixels = int(frame.masks[1].sum())
    frame.depth_m[:], frame.masks[1] = board_depth, frame.masks[1] | board_mask
    assert cv2.connectedComponents(frame.masks[1].astype(np.uint8))[0] == 3  # background, object, board
    assert board_mask.sum() > object_pixels  # the board is the largest component
    tracker = Tracker(pipeline)
    first = tracker(frame)
    assert first.instances == [] and first.timings_ms["estimator"] > 0  # the board was tried first and failed
    published = [tracker(frame).instances for _ in range(3)]
    found = [r for r in published if r]
    assert found and all(_close(r[0], R, t) for r in found), published


def test_of_two_tracks_the_one_moving_with_the_scene_gives_the_scenes_motion(setup):
    """Two followed tracks, one of them pushed and turned: their motions tie as votes, and the
    scene's last motion (the camera's) breaks the tie, whichever track comes first. A lost track
    coasts with the scene's motion, and a pushed object's turn about its own centre, applied to an
    object elsewhere, would throw it centimetres off."""
    pipeline, _ = setup
    tracker = Tracker(pipeline)
    camera = (Rotation.from_euler("y", 0.5, degrees=True).as_matrix(), np.array([0.002, 0.0, 0.0]))
    centre = np.array([0.1, 0.0, 0.6])
    turn = Rotation.from_euler("y", 8, degrees=True).as_matrix() @ camera[0]
    pushed = (turn, camera[0] @ centre + camera[1] + np.array([0.01, 0.0, 0.0]) - turn @ centre)
    for motions in ([camera, pushed], [pushed, camera]):
        tracker._scene_motion = camera
        tracker._update_scene_motion(motions)
        assert tracker._scene_motion is camera
