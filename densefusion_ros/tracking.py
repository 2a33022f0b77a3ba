"""Follow objects from frame to frame: accurate poses at camera rate.

A single frame's accurate path (networks, then verification: :mod:`densefusion_ros.verify`)
costs several times a camera frame. Objects mostly move little between frames, so a
:class:`Tracker` runs that path only to **acquire** an object, and then **follows** it:

* **acquire** a new or lost object (a mask component that no track explains) with the pipeline
  (networks + verification), at most ``acquire_per_frame`` per frame so that no frame stalls; an
  acquired pose that the camera sees through in places (verification pulled it toward a distractor
  of its colour that touches it) climbs onto the object before its check;
  a class whose acquisition failed waits a few frames before the next try, unless one of its
  unexplained mask components has grown well past the one tried (an object coming into view);
* **follow** every track: predict its pose with a constant-velocity model (scaled by the
  frames' stamp intervals), take the observed depth points of its class's mask inside the
  predicted silhouette (grown by ``margin_px``), and run a short ICP from the prediction, pulled
  in the directions the points leave free toward the last pose moved by the scene's motion (a
  track's own velocity would carry drift in those directions forward); all tracks in one batched call.
  A node that drops frames to keep up sees objects move further between its frames than the
  motion model foresees: a track whose follow fails, or whose prediction finds none of its
  points, follows once more from its prediction **slid** over its class mask to where the mask
  shows it (``search_px``; not onto another followed track of its class), and keeps the better of the two;
  a pose with more than a few of its model points where the camera sees through them then climbs
  the verification score (ICP pulls the model onto the observed points, nothing pushes it out of
  the space in front of them), after the re-check and the recovery below, which weigh the follow's
  own pose: a climbed wrong turn would hold off the re-check's better one;
* **check** every pose against the depth image (:func:`~densefusion_ros.verify.depth_terms`):
  ICP fitness, coverage of the object's whole mask component within the pose's reach (a distractor
  of its colour touching it in the image joins the component), points the camera sees through or
  that lie below the table (:mod:`~densefusion_ros.support_plane`); for an acquired pose also as a
  share of the points the camera would see (a distractor of its colour taken for it shows little of
  the model, and that in front). A followed pose that fails,
  or a coasting one that fails but lies on its object (it fits its points and covers part of its
  mask), gets one local verification from its prediction (**recover**); a pose that still fails
  is not published: a followed track is lost, a coasting one coasts on;
* **coast**: a lost track moves with the scene's motion (the camera's, for a still scene) and is
  followed again when its object shows where that puts it, with its id: an object that left the
  view or hid behind another returns without an acquisition;
* **re-check the turn** (temporal evidence): each frame one followed track, round robin, is
  verified afresh on its region (the pipeline's hypothesise-and-verify over all its turns, from
  the track's pose; its climb and final ICP only when a turn already leads before them); a
  result that explains the depth clearly better replaces the track's pose. A view that cannot
  tell two poses apart keeps the track's; a later view that can, switches. A tracker that falls
  behind the camera (frames more than ``recheck_max_interval`` camera frames apart) skips it and
  keeps up with more frames.

A pose mostly outside the image (the pipeline's ``icp_options.verify_min_in_view``) is neither
acquired (the pipeline does not publish it), recovered nor re-checked: the check can weigh only
the sliver the image shows, which fits any surface of the object's colour at the border; an object
leaving the view is still followed, without those two.

``Tracker(pipeline)(frame)`` returns a :class:`~densefusion_ros.pipeline.FrameResult` whose
instances carry a ``track_id``, stable while the object is followed; a lost object found again
within ``reuse_lost_frames`` frames, where its track has coasted to, gets its id back. Frames must come
in stamp order; :meth:`Tracker.reset` forgets every track. No ROS imports here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from densefusion_ros import geometry
from densefusion_ros.catalog import ObjectInfo
from densefusion_ros.frame import Frame
from densefusion_ros.pipeline import FrameResult, InstanceResult, Pipeline, validate_frame
from densefusion_ros.sampling import mask_box, pixels_of, valid_depth
from densefusion_ros.support_plane import support_plane
from densefusion_ros.verify import (
    DepthEvidence,
    ModelBank,
    VerifyInput,
    climb,
    conclude,
    depth_terms,
    icp,
    padded,
    pose_covariance,
    propose,
    score_of_terms,
    score_poses,
    seen_violation,
    verify_instances,
)

__all__ = ["Tracker", "TrackerOptions", "Track"]

log = logging.getLogger(__name__)

SLIDE_CELL = 4
"""The slide of a prediction over its class mask (``TrackerOptions.search_px``) is searched on every
4th row and column: a silhouette of a few thousand pixels is a few hundred cells."""

NO_BACKOFF = (0, 0, 0)
"""A class's acquisition back-off before any failure: (failures, next try's frame, pixels tried)."""

ONTO_SURFACE = 0.75
"""An acquired pose that climbs out of seen-through space (:meth:`Tracker._climb_acquired`) must end
with at least this share of its model points supported by the depth, over those supported or seen
through before: it moved onto the surface, not behind it."""

CHECK_CELLS = 256
"""Cells of the mask grid on which the check measures coverage: few enough that the visible share
of the 2000 model points (a third to a half) puts a few in each cell at any image size; on a
finer grid a correct pose's coverage falls as the object's image grows past the point count."""


@dataclass
class TrackerOptions:
    """Tracker settings (pixels, metres, frames).

    Attributes:
        acquire_per_frame: most acquisitions (the pipeline's networks + verification, one mask
            component each) per frame; the rest wait for later frames.
        follow_points: most observed points per track in the follow ICP.
        follow_iterations: ICP steps per track and frame.
        margin_px: the predicted silhouette grows by this many pixels before it selects the
            observed points (the motion model's error, in pixels, must stay below it).
        follow_prior: the follow ICP's pull (:func:`~densefusion_ros.verify.icp`'s ``prior``)
            toward the last pose moved by the scene's motion: a view that leaves a direction
            free (a mug with its handle hidden turns freely about its axis) keeps the object's
            last turn there instead of drifting.
        velocity_damping: the constant-velocity prediction moves by this share of the last
            frame-to-frame motion, scaled by the ratio of the frames' intervals when they carry
            stamps, and by this share once more for each camera frame (``camera_hz``) beyond the
            first that the interval spans: a node that drops frames predicts less of a motion it
            measured long ago (0 = predict no motion).
        camera_hz: the camera's frame rate (frames per second), by which an interval between two
            stamps counts the camera frames it spans (``velocity_damping``).
        min_fitness: a pose passes its check when at least this share of the track's observed
            points lie within the ICP correspondence distance of the posed model,
        min_coverage: the supported model points reach at least this share of the mask (its
            pixels with depth: :func:`~densefusion_ros.icp.mask_grid`), and
        max_violation: at most this share of the model points lie in front of the measured
            depth (:func:`~densefusion_ros.verify.depth_terms`).
        max_seen_violation: an acquired pose also fails when more than this share of the model
            points that the camera would see (the posed model's front surface, with a depth
            reading: :func:`~densefusion_ros.verify.seen_violation`) lie in front of the depth: a
            distractor of the object's colour taken for it (a torus sunk into a box's face) hides
            most of the model, and what shows lies in front. Followed poses are not held to it: a
            track coming back into view, or a pose a few millimetres off, fails it before its
            follow and climb settle (1 = no such term).
        min_pixels: a track whose class mask has fewer pixels inside its silhouette is lost
            (occluded or out of view); also the smallest mask component that is acquired.
        explained_share: a mask component is explained by a track (not acquired) when at least
            this share of its pixels lies inside the track's silhouette.
        recheck_turns: each frame one followed track (round robin) is verified afresh: the
            pipeline's hypothesise-and-verify (all turns of ``IcpOptions.rotation_group``, then,
            when one leads the track's pose by half of ``recheck_margin``, the climb and the final
            ICP) on its region, from its pose. A turn the follow ICP cannot leave (the mug a third
            of a turn off about its axis, once the handle shows) is found there; a short ICP from
            each of the cube group's turns missed it (docs/design_notes.md, 'tracking: the turn
            re-check').
        recheck_margin: the re-check's pose replaces the track's when its score is higher by this
            much; half of it is the lead a turn needs before the climb (``recheck_turns``).
        recheck_max_interval: the re-check runs only in a frame at most this many camera frames
            (``camera_hz``) after the last one processed (or when the stamps give no interval): a
            tracker that falls behind the camera (a node on a CPU, whose latest frame wins) spends
            its frames on following, and keeps up with more of them. The re-check is about a third
            of a frame there, and what a robot holds at every camera frame gains more from the
            pace than from the turns it finds (docs/design_notes.md, 'tracking: the turn re-check
            in a tracker behind the camera'); the tracker that keeps up re-checks every frame.
        reuse_lost_frames: a lost track coasts with the scene's motion for this many frames: it
            is followed again when its object shows where the coasting puts it, and its id is
            given back to an object of its class acquired within one model diameter of it.
        retry_frames: the longest wait of a class between failed acquisitions (frames): most
            failed tries are on distractors of the object's colour, which stay.
        regrow_share: a class waiting after a failed acquisition is a candidate again at once
            when one of its unexplained mask components has grown to this multiple of the pixels
            last tried: an object coming out from behind another or into the view is tried as it
            shows, a distractor of its colour still waits (0 = never wait).
        recover: a followed or coasting track whose pose fails the check gets one local
            verification (ICP and the score's climb from its predicted pose): a followed one
            before it is lost, a coasting one to be followed again,
        recover_coverage: a coasting one only when its pose fits its observed points
            (``min_fitness``) and covers this share of its region's mask: its object shows where
            it coasted to (most coasting tracks that fail lie on other objects or on none).
        reach_margin: a pose is checked against only the part of its region (the mask components
            its silhouette touches) that its object can occupy: the pixels whose depth lies within
            the posed model's bounding sphere grown by this (metres; the predicted pose's, for a
            followed track). A distractor of the object's colour that touches it in the image
            joins its mask component, and would leave a right pose short of ``min_coverage``
            (None = the whole region).
        climb_violation: a followed track's pose with a larger share of its model
            points violating the depth (the camera sees through them, or they lie below the
            table) climbs the verification score (:func:`~densefusion_ros.verify.climb`: turns of
            8, 4, 2 degrees, shifts of a few millimetres) from its pose after the re-check and the
            recovery. ICP pulls the model onto the observed points but nothing pushes it out of
            the space the camera sees through: a mug turning about its axis drifts with its
            handle in front of the table. An acquired pose that fails its check by such space
            alone climbs too, and must end at or below this share (:meth:`Tracker._climb_acquired`).
            1 = never climb.
        search_px: a followed track's predicted silhouette slides over its class mask by up to
            this many pixels (image rows and columns) to where it covers the most mask; when that
            covers ``search_gain`` more of the silhouette than the prediction's own place, a
            follow that fails its check runs once more from the slid prediction (moved at its
            depth), and one that finds no points at the prediction starts there. A node that
            drops frames to keep up sees objects move further between its frames than the motion
            model foresees (a camera swept at a few hundred pixels a second); a followed track
            that passes is never moved (0 = no slide),
        search_gain: and a partly hidden object does not pull its prediction aside.
    """

    acquire_per_frame: int = 1
    follow_points: int = 500
    follow_iterations: int = 15
    margin_px: int = 12
    follow_prior: float = 0.02
    velocity_damping: float = 0.8
    camera_hz: float = 30.0
    min_fitness: float = 0.9
    min_coverage: float = 0.8
    max_violation: float = 0.08
    max_seen_violation: float = 0.12
    min_pixels: int = 50
    explained_share: float = 0.3
    recheck_turns: bool = True
    recheck_margin: float = 0.2
    recheck_max_interval: float = 1.5
    reuse_lost_frames: int = 90
    retry_frames: int = 30
    regrow_share: float = 1.25
    recover: bool = True
    recover_coverage: float = 0.5
    reach_margin: float | None = 0.02
    climb_violation: float = 0.02
    search_px: int = 96
    search_gain: float = 0.15


@dataclass
class Track:
    """One followed object.

    Attributes:
        track_id: stable id; ``info``: the catalog object.
        R, t: the last checked pose (object -> camera, metres); ``velocity``: the last
            frame-to-frame motion ``(dR, dt)`` in the camera frame.
        state: ``"tracking"`` or ``"lost"``; ``lost_at``: the frame it was lost at.
        age: frames since acquisition; ``reacquired``: times it was lost and acquired again.
    """

    track_id: int
    info: ObjectInfo
    R: np.ndarray
    t: np.ndarray
    velocity: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.eye(3), np.zeros(3)))
    state: str = "tracking"
    lost_at: int = -1
    age: int = 0
    reacquired: int = 0
    confidence: float = 0.0


class Tracker:
    """Acquire, follow and check objects over a stream of frames (module docstring).

    Args:
        pipeline: a :class:`~densefusion_ros.pipeline.Pipeline`; its configuration (normally
            ``icp="verify"``) is the acquisition path, its segmenter gives the masks and its
            ``icp_options`` the scoring settings (and ``verify_min_in_view``, which the
            acquisitions pass only with ``icp="verify"``).
        **options: fields of :class:`TrackerOptions`.
    """

    def __init__(self, pipeline: Pipeline, **options) -> None:
        known = {f.name for f in fields(TrackerOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown tracker options {unknown}; known: {sorted(known)}")
        self.pipeline = pipeline
        self.options = TrackerOptions(**options)
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids start again at 0)."""
        self.tracks: list[Track] = []
        self._next_id = 0
        self._frame_index = 0
        self._recheck_cursor = 0
        self.reacquisitions = 0
        self.acquisitions = 0
        self._reacquired_at: list[float] = []
        self._scene_motion: tuple[np.ndarray, np.ndarray] = (np.eye(3), np.zeros(3))
        self._last_stamp: float | None = None  # the last frame's stamp (seconds); None before the first frame
        self._interval, self._motion_scale = None, 1.0
        self._plane: np.ndarray | None = None  # this frame's support plane (support_plane)
        self._failed: dict[int, list[tuple[np.ndarray, int]]] = {}  # class id -> (camera-frame centre, frame) of its last failed acquisitions
        self._backoff: dict[int, tuple[int, int, int]] = {}  # class id -> (failed acquisitions in a row, next try's frame, pixels tried)

    # ------------------------------------------------------------------------------------------

    def __call__(self, frame: Frame) -> FrameResult:
        """Poses of the followed objects in ``frame`` (each with its ``track_id``); an object
        whose pose fails the depth check is left out. Never raises on bad input (see
        :meth:`Pipeline.__call__ <densefusion_ros.pipeline.Pipeline.__call__>`)."""
        start = time.perf_counter()
        result = FrameResult()
        try:
            validate_frame(frame)
        except ValueError as e:
            result.error = f"invalid frame: {e}"
            result.timings_ms["total"] = (time.perf_counter() - start) * 1e3
            return result
        self._frame_index += 1
        self._motion_scale = self._interval_ratio(float(frame.stamp))
        with torch.inference_mode():
            masks = self._class_masks(frame, result)
            components = {c: cv2.connectedComponents(m.astype(np.uint8), connectivity=8) for c, m in masks.items()}
            self._plane = None
            if self.pipeline.config.icp_options.verify_support_plane:
                self._plane = support_plane(frame.depth_m, frame.K, exclude=np.logical_or.reduce(list(masks.values())) if masks else None)
            t_seg = time.perf_counter()
            published = self._follow(frame, components)
            t_follow = time.perf_counter()
            published = self._unique(published + self._acquire(frame, components, result))
        result.timings_ms["segmentation"] = (t_seg - start) * 1e3
        result.timings_ms["track"] = (t_follow - t_seg) * 1e3
        result.instances = sorted(published, key=lambda r: r.track_id)
        result.timings_ms["total"] = (time.perf_counter() - start) * 1e3
        return result

    def stats(self) -> dict:
        """For diagnostics: tracks by state, acquisitions, re-acquisitions (all time and over
        the last 60 s of wall time)."""
        now = time.monotonic()
        self._reacquired_at = [s for s in self._reacquired_at if now - s < 60.0]
        return {
            "tracks": sum(t.state == "tracking" for t in self.tracks),
            "lost": sum(t.state == "lost" for t in self.tracks),
            "acquisitions": self.acquisitions,
            "reacquisitions": self.reacquisitions,
            "reacquisitions_per_minute": len(self._reacquired_at),
        }

    # masks ------------------------------------------------------------------------------------

    def _class_masks(self, frame: Frame, result: FrameResult) -> dict[int, np.ndarray]:
        """``{class_id: (H, W) bool}`` of the catalog's classes present in the frame."""
        if frame.masks is not None:
            masks = {int(c): np.asarray(m) != 0 for c, m in frame.masks.items()}
        else:
            labels = frame.label if frame.label is not None else self.pipeline.segment(frame.rgb)
            if frame.label is None:
                result.label = labels
            ids = np.unique(labels[:: 4, :: 4])
            masks = {int(c): labels == c for c in ids if c != 0}
        return {c: m for c, m in masks.items() if self.pipeline.catalog.by_class_id(c) is not None}

    # follow -----------------------------------------------------------------------------------

    def _silhouette(self, info: ObjectInfo, R: np.ndarray, t: np.ndarray, frame: Frame) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The pixels the posed model covers, grown by ``margin_px``: ``(H, W)`` bool, and the
        box ``(rows, cols)`` outside which it is all False."""
        pts = self.pipeline.model_geometry(info).points.cpu().numpy()
        X = pts @ R.T + t
        X = X[X[:, 2] > 1e-3]
        shape = frame.depth_m.shape
        out, empty = np.zeros(shape, bool), (slice(0, 0), slice(0, 0))
        if not len(X):
            return out, empty
        uv = np.round(geometry.project(X, np.asarray(frame.K, np.float64))).astype(np.int64)
        uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < shape[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < shape[0])]
        if not len(uv):
            return out, empty
        # dilate only the box that the grown silhouette can reach: the same pixels as the whole image's dilation
        m = self.options.margin_px
        (c0, r0), (c1, r1) = np.maximum(uv.min(0) - m, 0), np.minimum(uv.max(0) + m + 1, (shape[1], shape[0]))
        box = np.zeros((r1 - r0, c1 - c0), np.uint8)
        box[uv[:, 1] - r0, uv[:, 0] - c0] = 1
        out[r0:r1, c0:c1] = cv2.dilate(box, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * m + 1, 2 * m + 1))) != 0
        return out, (slice(r0, r1), slice(c0, c1))

    def _follow(self, frame: Frame, components: dict[int, tuple[int, np.ndarray]]) -> list[InstanceResult]:
        """Predict, ICP and check every followed track and every recently lost one (batched).

        A followed track is predicted by its own last motion; a lost one coasts with the
        scene's (:meth:`_update_scene_motion`): an object that left the view or hid behind
        another is found again where the camera's motion puts it, without an acquisition. A
        followed track that fails is lost; a lost one that passes is followed again."""
        opts = self.options
        now = self._frame_index
        self.tracks = [tr for tr in self.tracks if tr.state == "tracking" or now - tr.lost_at <= opts.reuse_lost_frames]
        rows, regions, clouds, anchors = [], [], [], []
        predicted = []  # a track that fails is lost where it was predicted, not where a slide moved it
        valid = valid_depth(frame.depth_m)
        slidable: list[int] = []  # rows whose failed follow may run again from their prediction slid onto the class mask
        scene_R, scene_t = _damped(*self._scene_motion, opts.velocity_damping * self._motion_scale)
        predictions = {}  # track id -> its predicted pose
        for tr in self.tracks:
            dR, dt = tr.velocity if tr.state == "tracking" else self._scene_motion
            Rp, tp = _damped(dR, dt, opts.velocity_damping * self._motion_scale)
            predictions[tr.track_id] = (Rp @ tr.R, Rp @ tr.t + tp)
        for tr in self.tracks:
            R_pred, t_pred = predictions[tr.track_id]
            anchor = (scene_R @ tr.R, scene_R @ tr.t + scene_t)
            can_slide = opts.search_px > 0 and tr.state == "tracking" and tr.info.class_id in components
            start = np.zeros(3)  # the follow starts at the prediction, or slid onto the mask when nothing is there
            placed = self._place(frame, valid, components, tr.info, R_pred, t_pred)
            if placed is None and can_slide:
                start, can_slide = self._slide(tr, R_pred, t_pred, frame, components[tr.info.class_id][1], predictions), False
                placed = self._place(frame, valid, components, tr.info, R_pred, t_pred + start) if start.any() else None
            if placed is None:
                self._lose(tr, R_pred, t_pred)
                continue
            if can_slide:
                slidable.append(len(rows))
            predicted.append((tr, R_pred, t_pred))
            rows.append((tr, R_pred, t_pred + start))
            anchors.append((anchor[0], anchor[1] + start))
            regions.append(placed[0])
            clouds.append(placed[1])
        if not rows:
            self._update_scene_motion([])
            return []
        models = [self.pipeline.model_geometry(tr.info) for tr, _, _ in rows]
        bank = ModelBank(models)
        found, source, valid_pts, evidence = self._fit(frame, bank, list(range(len(rows))), rows, anchors, regions, clouds)
        if self._retry_slid(frame, valid, components, bank, slidable, rows, anchors, regions, clouds, found, predictions):  # the check's inputs moved
            source, valid_pts = padded(clouds, list(range(len(clouds))), self.pipeline.device)
            evidence = DepthEvidence.build(frame.depth_m, frame.K, regions, self.pipeline.device, CHECK_CELLS, self._plane)
        turned = self._recheck(frame, rows, regions, clouds, bank, evidence, source, valid_pts, found) if self._rechecks() else None
        if opts.recover:
            self._recover(frame, rows, regions, clouds, bank, evidence, source, valid_pts, found)
        self._climb_violating(rows, bank, evidence, source, valid_pts, found)
        R, t, fitness, rmse, coverage = (found[k] for k in ("R", "t", "fitness", "rmse", "coverage"))
        out, motions = [], []
        R_np, t_np = R.double().cpu().numpy(), t.double().cpu().numpy()
        for j, (tr, R_pred, t_pred) in enumerate(predicted):
            if not self._passes(f"track {tr.track_id} ({tr.info.name})", found, j):
                self._lose(tr, R_pred, t_pred)
                continue
            dR = R_np[j] @ tr.R.T
            motion = (dR, t_np[j] - dR @ tr.t)
            if j == turned:  # a turn replaced the pose: the change is no motion, the scene's is the best guess
                tr.velocity = self._scene_motion
            elif tr.state == "tracking":
                motions.append(motion)
                tr.velocity = motion
            else:  # found again where the scene's motion put it
                tr.state, tr.velocity = "tracking", self._scene_motion
                self._count_reacquisition(tr)
            tr.R, tr.t = R_np[j], t_np[j]
            tr.age += 1
            tr.confidence = float(coverage[j])
            out.append(self._result(tr, regions[j], clouds[j], float(fitness[j]), float(rmse[j])))
        self._update_scene_motion(motions)
        return out

    def _retry_slid(
        self, frame: Frame, valid, components, bank, slidable: list[int], rows, anchors, regions, clouds, found, predictions: dict
    ) -> bool:
        """The rows ``slidable`` whose follow failed the check and whose prediction slides onto
        their class mask (:meth:`_slide`) follow once more from the slid prediction, in one
        batched call; a result that scores higher (verification's score of the check's terms)
        replaces the row in ``rows``, ``anchors``, ``regions``, ``clouds`` and ``found``, so that
        the recovery and the climb start from it (a track that still fails is lost where it was
        predicted: the slide may have found another object of its colour). Returns whether any did."""
        tries = {}
        for j in slidable:
            if self._passes(None, found, j):
                continue
            tr, R_pred, t_pred = rows[j]
            shift = self._slide(tr, R_pred, t_pred, frame, components[tr.info.class_id][1], predictions)
            placed = self._place(frame, valid, components, tr.info, R_pred, t_pred + shift) if shift.any() else None
            if placed is not None:
                tries[j] = ((tr, R_pred, t_pred + shift), (anchors[j][0], anchors[j][1] + shift)) + placed
        if not tries:
            return False
        picks = list(tries)
        slid = self._fit(frame, bank, picks, *(list(x) for x in zip(*tries.values())))[0]
        w = self.pipeline.config.icp_options.score_weights[1:]
        before = score_of_terms(found["supported"][picks], found["violating"][picks], found["coverage"][picks], *w)
        better = (score_of_terms(slid["supported"], slid["violating"], slid["coverage"], *w) > before).tolist()
        for k, j in enumerate(picks):
            if better[k]:
                tr = rows[j][0]
                before_after = float(found["violating"][j]), float(slid["violating"][k])
                log.debug("track %d (%s) slides onto its mask: violating %.3f -> %.3f", tr.track_id, tr.info.name, *before_after)
                rows[j], anchors[j], regions[j], clouds[j] = tries[j]
                _set_row(found, j, slid, k)
        return any(better)

    def _place(
        self, frame: Frame, valid: np.ndarray, components, info: ObjectInfo, R: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A predicted pose's region (its class's mask components that its silhouette touches,
        within its reach: ``(H, W)`` bool) and observed points (``(N, 3)``: the region's inside
        the silhouette), or None with too few points."""
        silhouette, box = self._silhouette(info, R, t, frame)
        touching = _touching(components.get(info.class_id), silhouette, self.options.min_pixels)
        region = self._within_reach(frame, valid, info, R, t, touching)
        cloud = self._observed(frame, region[box] & silhouette[box] & valid[box], (box[0].start, box[1].start))
        return None if cloud is None else (region, cloud)

    def _fit(
        self, frame: Frame, bank: ModelBank, picks: list[int], rows, anchors, regions, clouds
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, DepthEvidence]:
        """The follow ICP of the rows ``picks`` of ``bank`` (one per track) from their predicted
        poses (``rows``: ``(track, R, t)``, one per pick, with their ``anchors``, ``regions`` and
        ``clouds``), all in one batched call, and its check on their regions. Returns the poses
        and their check (``R``, ``t``, ``fitness``, ``rmse``, ``supported``, ``violating``,
        ``coverage``, one row per pick), the padded clouds (``[P,N,3]`` and their valid
        ``[P,N]``) and the regions' evidence (one slot per pick)."""
        opts, icp_opts, device = self.options, self.pipeline.config.icp_options, self.pipeline.device
        obj = torch.as_tensor(picks, device=device)
        source, valid_pts = padded(clouds, list(range(len(clouds))), device)
        R0 = torch.as_tensor(np.stack([r for _, r, _ in rows]), dtype=torch.float32, device=device)
        t0 = torch.as_tensor(np.stack([t for _, _, t in rows]), dtype=torch.float32, device=device)
        anchor = tuple(torch.as_tensor(np.stack(a), dtype=torch.float32, device=device) for a in zip(*anchors))
        R, t, fitness, rmse = icp(
            bank, obj, source, valid_pts, R0, t0, opts.follow_iterations, icp_opts.verify_method, prior=opts.follow_prior, anchor=anchor
        )
        evidence = DepthEvidence.build(frame.depth_m, frame.K, regions, device, CHECK_CELLS, self._plane)
        slots = torch.arange(len(picks), device=device)
        supported, violating, coverage = depth_terms(evidence, bank.points[obj], slots, R, t, icp_opts.verify_tolerance)
        found = dict(R=R, t=t, fitness=fitness, rmse=rmse, supported=supported, violating=violating, coverage=coverage)
        return found, source, valid_pts, evidence

    def _slide(
        self, track: Track, R: np.ndarray, t: np.ndarray, frame: Frame, labels: np.ndarray, predictions: dict
    ) -> np.ndarray:
        """The shift ``(3,)`` (metres, camera frame, at the pose's depth) that slides ``track``'s
        posed model's silhouette over its class mask (``labels``: the class's mask components, 0 =
        background), searched on every ``SLIDE_CELL``-th row and column, to where it covers the
        most of it, within ``search_px``; zeros unless that covers ``search_gain`` more of the
        silhouette than the pose's own place. The predicted silhouettes (``predictions``: track id
        -> pose) of the other followed tracks of its class are not its mask: a track whose object
        left the view does not slide onto another instance of its class."""
        info = track.info
        r = max(self.options.search_px // SLIDE_CELL, 1)
        X = self.pipeline.model_geometry(info).points.cpu().numpy() @ R.T + t
        if t[2] <= 1e-3 or (X[:, 2] <= 1e-3).any():
            return np.zeros(3)
        uv = np.floor(geometry.project(X, np.asarray(frame.K, np.float64)) / SLIDE_CELL).astype(np.int64)
        (c0, r0), (c1, r1) = uv.min(0), uv.max(0) + 1
        small_mask = labels[::SLIDE_CELL, ::SLIDE_CELL] != 0
        h, w = small_mask.shape
        if c1 + r <= 0 or r1 + r <= 0 or c0 - r >= w or r0 - r >= h:
            return np.zeros(3)
        for other in self.tracks:
            if other is not track and other.state == "tracking" and other.info.class_id == info.class_id:
                silhouette, _ = self._silhouette(info, *predictions[other.track_id], frame)
                small_mask &= ~silhouette[::SLIDE_CELL, ::SLIDE_CELL]
        small_mask = small_mask.astype(np.float32)
        template = np.zeros((r1 - r0, c1 - c0), np.float32)
        template[uv[:, 1] - r0, uv[:, 0] - c0] = 1.0
        area = float(template.sum())
        window = np.zeros((r1 - r0 + 2 * r, c1 - c0 + 2 * r), np.float32)  # the mask around the silhouette, zeros outside the image
        rows, cols = slice(max(r0 - r, 0), min(r1 + r, h)), slice(max(c0 - r, 0), min(c1 + r, w))
        window[rows.start - (r0 - r) : rows.stop - (r0 - r), cols.start - (c0 - r) : cols.stop - (c0 - r)] = small_mask[rows, cols]
        covered = cv2.matchTemplate(window, template, cv2.TM_CCORR) / area  # [2r+1, 2r+1]: the share covered per slide
        dv, du = np.unravel_index(int(np.argmax(covered)), covered.shape)
        if covered[dv, du] < covered[r, r] + self.options.search_gain:
            return np.zeros(3)
        K = frame.K
        return np.array([(du - r) * SLIDE_CELL * t[2] / K[0, 0], (dv - r) * SLIDE_CELL * t[2] / K[1, 1], 0.0])

    def _unique(self, results: list[InstanceResult]) -> list[InstanceResult]:
        """Two tracks of one class on the same object (centres within a quarter of its diameter),
        followed or just acquired: the older id stays, the younger track is dropped."""
        keep: list[InstanceResult] = []
        for r in sorted(results, key=lambda r: r.track_id):
            info = self.pipeline.catalog.by_class_id(r.class_id)
            if any(k.class_id == r.class_id and _same_object(info, k.t, r.t) for k in keep):
                self.tracks = [tr for tr in self.tracks if tr.track_id != r.track_id]
            else:
                keep.append(r)
        return keep

    def _interval_ratio(self, stamp: float) -> float:
        """This frame's interval over the last one, from the stamps (1 until two intervals are
        known, and while the stamps do not increase: unset, they are all 0; a first stamp of 0
        counts, as synth sequences start there): motions are measured between processed frames,
        and a node that drops frames to keep up sees longer, uneven intervals. Over an interval
        of more than one camera frame (``camera_hz``) the motion is damped once more per frame
        beyond the first (``velocity_damping``): a hand-held camera's motion changes within a few
        tenths of a second, and a long prediction overshoots (a failed follow slides onto the
        mask: ``search_px``)."""
        last, self._last_stamp = self._last_stamp, stamp
        interval = stamp - last if last is not None and stamp > last else None
        previous, self._interval = self._interval, interval
        if interval is None or previous is None:
            return 1.0
        extra = max(round(interval * self.options.camera_hz) - 1, 0)  # camera frames beyond the first
        return float(np.clip(interval / previous, 0.0, 10.0)) * self.options.velocity_damping**extra

    def _update_scene_motion(self, motions: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """The scene's frame-to-frame motion in the camera frame (the camera's own, for a still
        scene): of the followed tracks' motions, the one closest to all the others and to the
        scene's last motion (one pushed object does not move it; with two tracks, one of them
        pushed, the last motion breaks the tie: a lost track coasts with the scene's motion, and a
        pushed object's turn about its own centre would carry an object elsewhere centimetres
        off); decays toward rest when no track was followed."""
        if not motions:
            self._scene_motion = _damped(*self._scene_motion, self.options.velocity_damping)
            return
        votes = motions + [self._scene_motion]
        relative = np.stack([a[0] @ b[0].T for a in motions for b in votes])  # one scipy call for every pair
        angles = np.reshape([np.linalg.norm(w) for w in Rotation.from_matrix(relative).as_rotvec()], (len(motions), len(votes)))
        cost = [sum(np.linalg.norm(a[1] - b[1]) + 0.1 * angle for b, angle in zip(votes, row)) for a, row in zip(motions, angles)]
        self._scene_motion = motions[int(np.argmin(cost))]

    def _count_reacquisition(self, tr: Track) -> None:
        tr.reacquired += 1
        self.reacquisitions += 1
        self._reacquired_at.append(time.monotonic())

    def _rechecks(self) -> bool:
        """Whether this frame re-checks a track's turn (``recheck_turns``, ``recheck_max_interval``)."""
        opts = self.options
        return opts.recheck_turns and (self._interval is None or self._interval * opts.camera_hz <= opts.recheck_max_interval)

    def _recheck(self, frame: Frame, rows, regions, clouds, bank, evidence, source, valid_pts, found: dict[str, torch.Tensor]) -> int | None:
        """One followed track (round robin by id) of those at least ``verify_min_in_view`` inside the image
        is verified afresh on its region from its pose:
        the hypotheses of all the pipeline's turns (:func:`~densefusion_ros.verify.propose`:
        screened, coarse ICP, scored on the region's own evidence, verification's grid); only when
        one of them already leads the track's pose, scored there too, by half of ``recheck_margin``
        do they go on to the climb and the final ICP (:func:`~densefusion_ros.verify.conclude`): a
        new turn leads before the climb, and the replacements given up are mostly the climb refining
        the track's own turn (docs/design_notes.md, 'tracking: the re-check's early stop'). An
        accepted result that scores ``recheck_margin`` higher in the tracker's check replaces its
        pose in ``found`` (``R``, ``t``, ``fitness``, ``rmse``, ``supported``, ``violating``,
        ``coverage``, one row per track). Returns the row replaced, or None."""
        followed = sorted((tr.track_id, j) for j, (tr, _, _) in enumerate(rows) if tr.state == "tracking")
        turn = [p for p in followed if p[0] > self._recheck_cursor] + [p for p in followed if p[0] <= self._recheck_cursor]
        j = next((j for _, j in turn if self._in_view(frame, rows[j][0].info, found["R"][j], found["t"][j])), None)
        if j is None:
            return None
        self._recheck_cursor = rows[j][0].track_id
        icp_opts = self.pipeline.config.icp_options
        w = icp_opts.score_weights
        local, (x,) = self._local_inputs(frame, rows, regions, clouds, [j], [(found["R"][j], found["t"][j])])
        model_bank = x.model.bank
        hypotheses = propose([x], model_bank, local, icp_opts)
        if not len(hypotheses.score):
            return None
        slot = torch.zeros(1, dtype=torch.int64, device=self.pipeline.device)
        here = float(score_poses(local, model_bank.points, slot, found["R"][j : j + 1], found["t"][j : j + 1], *w)[0])
        if float(hypotheses.score.max()) < here + 0.5 * self.options.recheck_margin:
            return None
        (verified,) = conclude([x], hypotheses, model_bank, local, icp_opts)
        if not verified.accepted:
            return None
        v = self._measure_results(bank, evidence, source, valid_pts, [j], [verified])
        fitted = float(v["fitness"][0]) >= self.options.min_fitness
        score = float(score_of_terms(v["supported"], v["violating"], v["coverage"], *w[1:])[0]) if fitted else -float("inf")
        current = float(score_of_terms(found["supported"][j], found["violating"][j], found["coverage"][j], *w[1:]))
        log.debug("track %d (%s) turn re-check: %.2f, verified %.2f", rows[j][0].track_id, rows[j][0].info.name, current, score)
        if score <= current + self.options.recheck_margin:
            return None
        _set_row(found, j, v, 0)
        return j

    def _climb_violating(self, rows, bank, evidence, source, valid_pts, found: dict[str, torch.Tensor]) -> None:
        """The rows of ``found`` whose violating share exceeds ``climb_violation`` climb the
        score (:func:`~densefusion_ros.verify.climb`) on the tracker's evidence, all at once; a
        climbed pose replaces its row, measured again, unless it fails the check where the row
        passed. Coasting tracks do not climb here (a climb would widen what finds them again),
        only in their recovery, which the check bounds (:meth:`_recover`)."""
        icp_opts = self.pipeline.config.icp_options
        followed = torch.as_tensor([tr.state == "tracking" for tr, _, _ in rows], device=found["violating"].device)
        picks = ((found["violating"] > self.options.climb_violation) & followed).nonzero()[:, 0]
        if not len(picks):
            return
        weights = icp_opts.score_weights
        score = score_of_terms(found["supported"][picks], found["violating"][picks], found["coverage"][picks], *weights[1:])
        R, t, _ = climb(evidence, bank, picks, picks, found["R"][picks], found["t"][picks], score, weights)
        climbed = self._measure(bank, evidence, source, valid_pts, picks, R, t)
        for k, j in enumerate(picks.tolist()):
            if self._passes(None, found, j) and not self._passes(None, climbed, k):
                continue  # the climb does not lose a track: its score leaves out the ICP fitness that the check weighs
            tr = rows[j][0]
            before, after = float(found["violating"][j]), float(climbed["violating"][k])
            log.debug("track %d (%s) climbs: violating %.3f -> %.3f", tr.track_id, tr.info.name, before, after)
            _set_row(found, j, climbed, k)

    def _recover(self, frame: Frame, rows, regions, clouds, bank, evidence, source, valid_pts, found: dict[str, torch.Tensor]) -> None:
        """Followed tracks whose pose fails the check, and coasting ones whose pose fails but
        fits their observed points (``min_fitness``) and covers ``recover_coverage`` of their
        region's mask, each predicted at least ``verify_min_in_view`` inside the image, get one local
        verification from their predicted pose
        (:func:`~densefusion_ros.verify.verify_instances` with that single start: ICP, then the
        score's climb); a result that passes replaces the pose in ``found``. A track that the
        follow ICP slid off its object (a partly hidden mug turned a few degrees) keeps its id and
        its turn, where a fresh acquisition could pick a view's twin (the mug upside down, when
        neither its top nor its bottom shows); an object coming out from behind another is found
        where its track coasted to, where an acquisition on its first partial views fails and
        then waits."""
        icp_opts = self.pipeline.config.icp_options
        opts = self.options
        near = ((found["fitness"] >= opts.min_fitness) & (found["coverage"] >= opts.recover_coverage)).tolist()  # a coasting track on its object
        failing = [
            j for j, (tr, _, _) in enumerate(rows)
            if (tr.state == "tracking" or near[j]) and not self._passes(None, found, j)
            and self._in_view(frame, tr.info, rows[j][1], rows[j][2])
        ]  # fmt: skip
        if not failing:
            return
        one_start = dict(init_rotations=1, verify_centroid_starts=False, verify_screen_points=0)
        options = replace(icp_opts, **one_start, verify_climb=1, verify_climb_margin=0.0)  # the start always climbs
        local, inputs = self._local_inputs(frame, rows, regions, clouds, failing, [(rows[j][1], rows[j][2]) for j in failing])
        results = verify_instances(inputs, local, options)
        v = self._measure_results(bank, evidence, source, valid_pts, failing, results)
        for k, j in enumerate(failing):
            recovered = results[k].accepted and self._passes(None, v, k)
            log.debug("track %d (%s) %s", rows[j][0].track_id, rows[j][0].info.name, "recovered" if recovered else "not recovered")
            if recovered:
                _set_row(found, j, v, k)

    def _local_inputs(self, frame: Frame, rows, regions, clouds, picks: list[int], starts: list) -> tuple[DepthEvidence, list[VerifyInput]]:
        """The evidence of the regions of rows ``picks`` alone (one slot each) and their
        :class:`~densefusion_ros.verify.VerifyInput` from ``starts`` (one ``(R, t)`` each, numpy or tensors)."""
        local = DepthEvidence.build(frame.depth_m, frame.K, [regions[j] for j in picks], self.pipeline.device, plane=self._plane)
        inputs = [
            VerifyInput(self.pipeline.model_geometry(rows[j][0].info), clouds[j], _numpy(R0), _numpy(t0), slot=k)
            for k, (j, (R0, t0)) in enumerate(zip(picks, starts))
        ]
        return local, inputs

    def _measure_results(self, bank, evidence, source, valid_pts, picks: list[int], results: list) -> dict[str, torch.Tensor]:
        """:meth:`_measure` of the verification ``results`` (:class:`~densefusion_ros.icp.IcpResult`) of the rows ``picks``."""
        device = self.pipeline.device
        R = torch.as_tensor(np.stack([r.R for r in results]), dtype=torch.float32, device=device)
        t = torch.as_tensor(np.stack([r.t for r in results]), dtype=torch.float32, device=device)
        return self._measure(bank, evidence, source, valid_pts, torch.as_tensor(picks, device=device), R, t)

    def _measure(self, bank, evidence, source, valid_pts, rows: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tracker's check of the poses ``R [P,3,3]``, ``t [P,3]`` of the tracks ``rows [P]``
        on their observed points and the evidence: ``R``, ``t``, ``fitness``, ``rmse``,
        ``supported``, ``violating``, ``coverage``, one row per pose (as ``found``'s)."""
        icp_opts = self.pipeline.config.icp_options
        _, _, fitness, rmse = icp(bank, rows, source[rows], valid_pts[rows], R, t, 0, icp_opts.verify_method)
        sup, vio, cov = depth_terms(evidence, bank.points[rows], rows, R, t, icp_opts.verify_tolerance)
        return dict(R=R, t=t, fitness=fitness, rmse=rmse, supported=sup, violating=vio, coverage=cov)

    def _lose(self, tr: Track, R: np.ndarray, t: np.ndarray) -> None:
        """Not followed this frame: a followed track becomes lost; either way it coasts to ``(R, t)``."""
        if tr.state == "tracking":
            tr.state, tr.lost_at = "lost", self._frame_index
        tr.R, tr.t = R, t

    # acquire ----------------------------------------------------------------------------------

    def _acquire(self, frame: Frame, components: dict[int, tuple[int, np.ndarray]], result: FrameResult) -> list[InstanceResult]:
        """Run the pipeline on unexplained mask components, ``acquire_per_frame`` at most, one per
        class, in one batched call. After a failed acquisition a class waits 2, 4, 8, ... frames
        (at most ``retry_frames``) before the next: a distractor that the segmenter takes for the
        object would otherwise cost an acquisition every frame. Its next try takes a component
        that has not failed (none of its last failed tries' centres within a model diameter), else
        the one that failed longest ago, the largest among equals: a distractor larger than the
        object beside it is not tried again and again. An unexplained component ``regrow_share``
        times the size of the one tried ends the wait: an object coming into view, whose first
        partial views failed, is tried as it shows."""
        opts = self.options
        now = self._frame_index
        live = [tr for tr in self.tracks if tr.state == "tracking"]
        candidates = []
        for cid in [c for c in self._backoff if c not in components]:  # gone from view: a fresh start when it returns
            del self._backoff[cid]
        for cid in [c for c in self._failed if c not in components]:
            del self._failed[cid]
        for cid, (count, labels) in components.items():
            _, next_try, tried = self._backoff.get(cid, NO_BACKOFF)
            areas = np.bincount(labels.ravel(), minlength=count)
            if now < next_try and areas[1:].max(initial=0) < opts.regrow_share * tried:
                continue  # waiting, and no component has grown enough, explained or not
            explained = np.zeros(count, bool)  # per component: a track of the class covers enough of it
            for tr in live:  # each track's silhouette only where its class may be acquired
                if tr.info.class_id == cid:
                    silhouette, box = self._silhouette(tr.info, tr.R, tr.t, frame)
                    explained |= np.bincount(labels[box][silhouette[box]], minlength=count) >= opts.explained_share * areas
            unexplained = np.flatnonzero((areas[1:] >= opts.min_pixels) & ~explained[1:]) + 1
            if now < next_try and areas[unexplained].max(initial=0) < opts.regrow_share * tried:
                continue
            for k in unexplained:
                candidates.append((int(areas[k]), cid, labels, k))
        # the class's fewest failures; a component never tried, or tried longest ago; the largest
        candidates.sort(key=lambda c: (self._backoff.get(c[1], NO_BACKOFF)[0], self._last_failure(frame, c[1], c[2], c[3]), -c[0]))
        out = []
        chosen: dict[int, np.ndarray] = {}  # one component per class: the pipeline takes one mask per class
        for _, cid, labels, k in candidates:
            if len(chosen) < opts.acquire_per_frame and cid not in chosen:
                chosen[cid] = labels == k
        if not chosen:
            return out
        res = self.pipeline(replace(frame, masks=chosen, label=None))  # all of them in one batched call
        for stage in ("preprocess", "estimator", "refiner", "icp"):
            result.timings_ms[stage] += res.timings_ms[stage]
        result.skipped += res.skipped
        acquired = set()
        for inst in res.instances:
            component = chosen[inst.class_id]
            twin = self._followed_at(inst)
            if twin is not None:  # its component joins the object to more of its colour than the track covers
                result.skipped.append((inst.class_id, f"acquired pose of {inst.name} is track {twin}'s: the class waits"))
                continue
            check = self._check_acquired(frame, inst, component)
            if check is None:
                result.skipped.append((inst.class_id, f"acquired pose of {inst.name} failed the depth check"))
            else:
                inst, fitness, rmse, cloud = check
                out.append(self._start_track(inst, component, fitness, rmse, cloud))
                acquired.add(inst.class_id)
        for cid in chosen:
            if cid in acquired:
                self._backoff.pop(cid, None)
            else:
                failures = self._backoff.get(cid, NO_BACKOFF)[0] + 1
                self._backoff[cid] = (failures, now + min(2**failures, opts.retry_frames), int(chosen[cid].sum()))
                centre = _centre(frame, chosen[cid])
                if centre is not None:
                    self._failed.setdefault(cid, []).append((centre, now))
                    del self._failed[cid][:-8]
        for cid in acquired:
            self._failed.pop(cid, None)
        return out

    def _followed_at(self, inst: InstanceResult) -> int | None:
        """The id of a followed track of ``inst``'s class on the same object (centres within a
        quarter of its diameter, as :meth:`_unique` counts them), or None. Such an acquisition
        counts as failed, so that its class waits before the next (:meth:`_unique` would drop it,
        and the same component would be acquired again in every frame)."""
        for tr in self.tracks:
            if tr.state == "tracking" and tr.info.class_id == inst.class_id and _same_object(tr.info, tr.t, inst.t):
                return tr.track_id
        return None

    def _last_failure(self, frame: Frame, cid: int, labels: np.ndarray, k: int) -> int:
        """The frame of the latest failed acquisition of class ``cid`` on a component whose centre
        lay within one model diameter of the component ``k`` of ``labels``, or -1 (never tried)."""
        failed = self._failed.get(cid)
        if not failed:
            return -1  # no component mask to make: the usual case
        centre = _centre(frame, labels == k)
        if centre is None:
            return -1
        diameter = self.pipeline.catalog.by_class_id(cid).diameter
        return max((at for c, at in failed if np.linalg.norm(c - centre) < diameter), default=-1)

    def _check_acquired(self, frame: Frame, inst: InstanceResult, mask: np.ndarray) -> tuple[InstanceResult, float, float, np.ndarray] | None:
        """``(inst, fitness, rmse, observed points)`` when the acquired pose passes the check (on the
        part of ``mask`` within its reach: :meth:`_within_reach`), else None. A pose that fails by
        seen-through space alone climbs first (:meth:`_climb_acquired`) and is checked from there;
        the returned ``inst`` carries the pose checked."""
        info = self.pipeline.catalog.by_class_id(inst.class_id)
        valid = valid_depth(frame.depth_m)
        checked = self._check_within_reach(frame, valid, info, inst.R, inst.t, mask)
        if checked is None:
            return None
        v, cloud, evidence = checked
        opts = self.options
        seen_through = float(v["violating"][0]) > opts.max_violation or float(v["seen_violating"][0]) > opts.max_seen_violation
        climbs = opts.climb_violation < 1.0 and seen_through
        if climbs and self._passes(None, v, 0, violation=False):
            climbed = self._climb_acquired(inst.name, info, evidence, v)
            if climbed is None:
                return None
            inst = replace(inst, R=climbed[0], t=climbed[1], quaternion_wxyz=geometry.matrix_to_quat(climbed[0]))
            checked = self._check_within_reach(frame, valid, info, inst.R, inst.t, mask)
            if checked is None:
                return None
            v, cloud, _ = checked
        if not self._passes(f"acquired {inst.name}", v, 0):
            return None
        if float(v["seen_violating"][0]) > opts.max_seen_violation:
            log.debug("acquired %s fails: %.3f of the points the camera would see are seen through", inst.name, float(v["seen_violating"][0]))
            return None
        return inst, float(v["fitness"][0]), float(v["rmse"][0]), cloud

    def _check_within_reach(
        self, frame: Frame, valid: np.ndarray, info: ObjectInfo, R: np.ndarray, t: np.ndarray, mask: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, DepthEvidence] | None:
        """The check's measures (:meth:`_measure`, one row, and ``seen_violating``:
        :func:`~densefusion_ros.verify.seen_violation`) of the pose ``(R, t)`` on the part of
        ``mask`` within its reach, with the observed points and the evidence they came from; None
        where no point is observed there."""
        region = self._within_reach(frame, valid, info, R, t, mask)
        cloud = self._observed(frame, region & valid)
        if cloud is None:
            return None
        device = self.pipeline.device
        bank = self.pipeline.model_geometry(info).bank
        obj = torch.zeros(1, dtype=torch.int64, device=device)
        source, valid_pts = padded([cloud], [0], device)
        evidence = DepthEvidence.build(frame.depth_m, frame.K, [region], device, CHECK_CELLS, self._plane)
        pose = [torch.as_tensor(np.asarray(x)[None], dtype=torch.float32, device=device) for x in (R, t)]
        measures = self._measure(bank, evidence, source, valid_pts, obj, *pose)
        measures["seen_violating"] = seen_violation(evidence, bank.points[obj], obj, *pose, self.pipeline.config.icp_options.verify_tolerance)
        return measures, cloud, evidence

    def _climb_acquired(
        self, name: str, info: ObjectInfo, evidence: DepthEvidence, v: dict[str, torch.Tensor]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """An acquired pose (its measures ``v`` on ``evidence``) that fits its points but that the
        camera sees through in places climbs the score without its coverage term
        (:func:`~densefusion_ros.verify.climb`). Verification can leave a pose a few millimetres
        off toward a distractor of the object's colour that touches it (the torus beside a box of
        its colour, the table seen through its ring), and the distractor's pixels, which the
        coverage term rewards, would hold it there. Returns the climbed pose ``(R (3, 3), t
        (3,))``, or None unless it fits the depth as closely as a followed pose must
        (``climb_violation``) and turned the seen-through points into supported ones
        (:data:`ONTO_SURFACE`): a pose that sank behind the surface, where points count for
        neither, is a wrong one (a distractor of the object's colour taken for it)."""
        icp_opts = self.pipeline.config.icp_options
        bank = self.pipeline.model_geometry(info).bank
        obj = torch.zeros(1, dtype=torch.int64, device=self.pipeline.device)
        weights = icp_opts.score_weights[:2] + (0.0,)
        score = score_of_terms(v["supported"], v["violating"], v["coverage"], *weights[1:])
        R, t, _ = climb(evidence, bank, obj, obj, v["R"], v["t"], score, weights)
        supported, violating, _ = depth_terms(evidence, bank.points[obj], obj, R, t, icp_opts.verify_tolerance, with_coverage=False)
        before = float(v["supported"][0] + v["violating"][0])
        log.debug("acquired %s climbs: violating %.3f -> %.3f, supported %.3f -> %.3f", name, float(v["violating"][0]),
                  float(violating[0]), float(v["supported"][0]), float(supported[0]))  # fmt: skip
        if float(violating[0]) > self.options.climb_violation or float(supported[0]) < ONTO_SURFACE * before:
            return None
        return R[0].cpu().numpy().astype(np.float64), t[0].cpu().numpy().astype(np.float64)

    def _in_view(self, frame: Frame, info: ObjectInfo, R, t) -> bool:
        """Whether at least ``icp_options.verify_min_in_view`` of ``info``'s model points, posed by
        ``R``, ``t`` (numpy or tensors), lie inside the image."""
        share = self.pipeline.share_in_view(frame, info, _numpy(R), _numpy(t))
        return share >= self.pipeline.config.icp_options.verify_min_in_view

    def _within_reach(self, frame: Frame, valid: np.ndarray, info: ObjectInfo, R: np.ndarray, t: np.ndarray, region: np.ndarray) -> np.ndarray:
        """``region`` ``(H, W)`` bool without the pixels whose depth lies farther from the posed
        model's centre than its bounding radius plus ``reach_margin`` (``TrackerOptions``): what
        the object can occupy. Pixels without depth (not ``valid``: the frame's
        :func:`~densefusion_ros.sampling.valid_depth`) stay: nothing says they are elsewhere."""
        if self.options.reach_margin is None or not region.any():
            return region
        model = self.pipeline.model_geometry(info)
        rr, cc = pixels_of(region & valid)
        centre = R @ model.centre_np + t
        far = np.linalg.norm(geometry.backproject(frame.depth_m, frame.K, rr, cc) - centre, axis=1) > model.radius + self.options.reach_margin
        out = region.copy()
        out[rr[far], cc[far]] = False
        return out

    def _observed(self, frame: Frame, pixels: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray | None:
        """The camera-frame points ``(N, 3)`` of the ``pixels`` (valid depth; a bool image whose
        first pixel is the frame's pixel ``origin``, row and column), at most ``follow_points``
        evenly spread; None when fewer than ``min_pixels``."""
        rr, cc = pixels_of(pixels)
        rr, cc = rr + origin[0], cc + origin[1]
        if len(rr) < self.options.min_pixels:
            return None
        if len(rr) > self.options.follow_points:
            pick = np.linspace(0, len(rr) - 1, self.options.follow_points).astype(np.int64)
            rr, cc = rr[pick], cc[pick]
        return geometry.backproject(frame.depth_m, frame.K, rr, cc)

    def _passes(self, what: str | None, measures: dict[str, torch.Tensor], j: int, violation: bool = True) -> bool:
        """The check of the pose in row ``j`` of ``measures`` (:meth:`_measure`'s) against the depth
        image (:class:`TrackerOptions`; without its violation term unless ``violation``); a failure
        is logged (debug) as ``what`` unless that is None."""
        opts = self.options
        fitness, coverage = float(measures["fitness"][j]), float(measures["coverage"][j])
        violating = float(measures["violating"][j]) if violation else 0.0
        if fitness >= opts.min_fitness and coverage >= opts.min_coverage and violating <= opts.max_violation:
            return True
        if what is not None:
            log.debug("%s fails: fitness %.2f, coverage %.2f, violating %.3f", what, fitness, coverage, violating)
        return False

    def _start_track(self, inst: InstanceResult, mask: np.ndarray, fitness: float, rmse: float, cloud: np.ndarray) -> InstanceResult:
        """A new track, or a recently lost one of the same class near this pose taken up again."""
        self.acquisitions += 1
        lost = [
            tr for tr in self.tracks
            if tr.state == "lost" and tr.info.class_id == inst.class_id and np.linalg.norm(tr.t - inst.t) < tr.info.diameter
        ]  # fmt: skip
        if lost:
            tr = min(lost, key=lambda tr: np.linalg.norm(tr.t - inst.t))
            tr.state, tr.R, tr.t, tr.velocity = "tracking", inst.R, inst.t, self._scene_motion
            self._count_reacquisition(tr)
        else:
            info = self.pipeline.catalog.by_class_id(inst.class_id)
            tr = Track(self._next_id, info, inst.R, inst.t)
            self._next_id += 1
            self.tracks.append(tr)
        tr.confidence = inst.confidence
        return self._result(tr, mask, cloud, fitness, rmse)

    def _result(self, tr: Track, mask: np.ndarray, cloud: np.ndarray, fitness: float, rmse: float) -> InstanceResult:
        box = mask_box(mask) or (0, 0, 0, 0)
        same_class = sorted(t.track_id for t in self.tracks if t.info.class_id == tr.info.class_id)
        return InstanceResult(
            name=tr.info.name, class_id=int(tr.info.class_id), index=int(tr.info.index),
            instance=same_class.index(tr.track_id), R=tr.R.copy(), t=tr.t.copy(),
            quaternion_wxyz=geometry.matrix_to_quat(tr.R), confidence=float(tr.confidence), box=box,
            num_points=len(cloud), mask=mask if self.pipeline.config.keep_masks else None,
            icp_fitness=fitness, icp_rmse=rmse, track_id=tr.track_id,
            covariance=pose_covariance(self.pipeline.model_geometry(tr.info), cloud, tr.R, tr.t),
        )  # fmt: skip


def _set_row(found: dict[str, torch.Tensor], j: int, values: dict[str, torch.Tensor], k: int) -> None:
    """Row ``j`` of each of ``found``'s tensors (one row per track) becomes row ``k`` of ``values``'."""
    for key, value in values.items():
        found[key] = found[key].clone()
        found[key][j] = value[k]


def _same_object(info: ObjectInfo, t_a: np.ndarray, t_b: np.ndarray) -> bool:
    """Whether two poses of ``info`` (their translations, metres) are on one object: centres within
    a quarter of its diameter."""
    return bool(np.linalg.norm(t_a - t_b) < 0.25 * info.diameter)


def _centre(frame: Frame, pixels: np.ndarray) -> np.ndarray | None:
    """The median camera-frame point ``(3,)`` of the ``pixels`` with depth (metres), or None."""
    rr, cc = pixels_of(pixels & valid_depth(frame.depth_m))
    return np.median(geometry.backproject(frame.depth_m, frame.K, rr, cc), axis=0) if len(rr) else None


def _numpy(x) -> np.ndarray:
    """A pose's part as float64 numpy (from numpy or a tensor)."""
    return x.double().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def _damped(dR: np.ndarray, dt: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the motion ``(dR, dt)``: the rotation's angle scaled, the translation scaled."""
    return Rotation.from_rotvec(share * Rotation.from_matrix(dR).as_rotvec()).as_matrix(), share * dt


def _touching(components: tuple[int, np.ndarray] | None, silhouette: np.ndarray, min_pixels: int) -> np.ndarray:
    """The union of the mask components (``(count, component label image)``, 0 = background)
    with at least ``min_pixels`` pixels inside ``silhouette``: the object's whole observed
    region, against which its pose is checked (a wrong pose explains its own silhouette)."""
    if components is None:
        return np.zeros_like(silhouette)
    _, labels = components
    ids, counts = np.unique(labels[silhouette], return_counts=True)
    ids = ids[(ids != 0) & (counts >= min_pixels)]
    return np.isin(labels, ids) if len(ids) else np.zeros_like(silhouette)


