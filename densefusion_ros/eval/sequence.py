"""``densefusion-ros evaluate --sequence``: the tracker (or the per-frame path) over 30 Hz sequences.

Each scene of the split is one sequence (``densefusion-ros synth --sequence``), its frames in
``im_id`` order. ``track`` mode runs one :class:`~densefusion_ros.tracking.Tracker`, reset at
each sequence's start; ``detect`` mode runs the pipeline on every frame alone. Masks come from
the segmenter (the node's path). Per object and pooled:

* **ADD(-S) < 0.1 d**: share of (object, frame) pairs where the object is at least
  ``min_visib`` visible that got a pose within 0.1 x diameter; no pose counts as a failure.
  Visible is BOP's ``visib_fract`` (unoccluded share of the silhouette's part inside the image)
  times the share of the object inside the image (of its model points projected with the true
  pose): an object that has mostly left the view is mostly not visible. The accuracy over the
  pairs with BOP's ``visib_fract`` alone is reported beside it;
* **time to first correct pose**: per (sequence, object), frames (of the sequence, processed or not)
  from the first frame it is ``min_visib`` visible to its first correct pose (mean over pairs that
  got one, and how many never did);
* **re-acquisitions**: a pose published again after frames without one while the object stayed
  ``min_visib`` visible;
* **wrong poses published**: published poses with ADD(-S) > 0.1 d, or of an object absent from
  the frame (no matter how visible: a published pose is a claim);
* **jitter**: how much a right pose wobbles between frames. Between consecutive processed frames
  where the same track (detect mode: any pose) is right in both, the ADD(-S) between the two poses,
  each first taken relative to its frame's true pose (mm; median and p95): the object's and the
  camera's true motion cancel, and what is left is the change of the pose's error, which a grasp
  planner or a viewer sees as a pose that jumps;
* **ms per frame**: the first frame of each sequence, then the steady state after the first
  ``warmup_s`` seconds (or half the sequence, if shorter): median and p95.

``--realtime`` replays each sequence as a live 30 Hz camera to a runner whose latest frame wins
(:func:`evaluate_sequences`): only the frames it gets are scored, and the report gives how many of
the camera's 30 a second that is. Correct and timely at once: a slow runner is scored on the frames
it keeps up with, far apart, as a node is. Scored that way, a slow frame hides its own misses (the
frames dropped meanwhile are not scored), so the report adds what a robot holds: **held**, at every
camera frame, the poses of the latest result that had arrived by then (the runner's own time after
its frame's arrival), moved from their frame's camera to this one through the sequence's true
camera poses (the robot's TF at the image stamp), against this frame's truth: ADD(-S) < 0.1 d over
the visible pairs, where an object without a pose yet, or whose pose went stale as it moved, fails,
and the held poses that are wrong (object-frames). The visible pairs without a held pose are counted
before the first held pose of the object's class in its sequence, right or wrong (mostly the
acquisition's wait), and after it (a pose dropped, an object back in view, another instance of its
class).

Writes ``sequence_results.md`` and ``sequence_results.json`` to ``--out``, and
``sequence_frames.csv``: one row per processed frame and object (of the ground truth, or a
published pose of an object not in it), to find where the misses and the wrong poses are.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from densefusion_ros.eval import metrics
from densefusion_ros.geometry import relative, share_in_image

FPS = 30.0


@dataclass
class _ObjectStats:
    pairs: int = 0
    correct: int = 0
    bop_pairs: int = 0
    bop_correct: int = 0
    wrong_published: int = 0
    reacquisitions: int = 0
    first_correct_frames: list[int] = field(default_factory=list)
    never_correct: int = 0
    jitter_mm: list[float] = field(default_factory=list)
    held_pairs: int = 0  # realtime: visible (object, camera frame) pairs, processed or not
    held_correct: int = 0
    held_wrong: int = 0  # realtime: held poses wrong at a camera frame
    held_none: int = 0  # realtime: visible pairs without a held pose
    held_none_first: int = 0  # realtime: of those, before its class's first held pose in its sequence


@dataclass
class SequenceResult:
    """Per object name (and ``"ALL"``) statistics, the frame times and the settings."""

    objects: dict[str, _ObjectStats] = field(default_factory=dict)
    first_ms: list[float] = field(default_factory=list)
    steady_ms: list[float] = field(default_factory=list)
    frames: int = 0  # processed
    camera_frames: int = 0  # of the sequences run, processed or not
    config: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    ROW_FIELDS = ("scene", "frame", "object", "visible", "visib_fract", "track_id", "error_d", "correct", "wrong", "jitter_mm")
    """``rows``' keys: the sequence (scene id) and its frame index, the object's name, whether it counts
    as visible (0/1) and its BOP ``visib_fract`` (empty for a pose of an object not in the frame), the
    published pose's ``track_id`` and ADD(-S) over the diameter (empty without a pose), whether
    that pose is right (< 0.1) or counts as wrong (0/1), and its jitter against the last processed
    frame (mm; empty where it has none: see the module docstring)."""

    def write_rows(self, path: Path) -> None:
        """``rows`` as CSV (``ROW_FIELDS``)."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.ROW_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)

    def summary(self) -> dict:
        rows = {}
        pooled = _ObjectStats()
        for name, s in sorted(self.objects.items()):
            rows[name] = _row(s)
            pooled.pairs += s.pairs
            pooled.correct += s.correct
            pooled.bop_pairs += s.bop_pairs
            pooled.bop_correct += s.bop_correct
            pooled.wrong_published += s.wrong_published
            pooled.reacquisitions += s.reacquisitions
            pooled.first_correct_frames += s.first_correct_frames
            pooled.never_correct += s.never_correct
            pooled.jitter_mm += s.jitter_mm
            pooled.held_pairs += s.held_pairs
            pooled.held_correct += s.held_correct
            pooled.held_wrong += s.held_wrong
            pooled.held_none += s.held_none
            pooled.held_none_first += s.held_none_first
        rows["ALL"] = _row(pooled)
        steady = np.asarray(self.steady_ms or [np.nan])
        return {
            "objects": rows,
            "ms_first_frame_mean": float(np.mean(self.first_ms)) if self.first_ms else float("nan"),
            "ms_steady_median": float(np.median(steady)),
            "ms_steady_p95": float(np.percentile(steady, 95)),
            "frames": self.frames,
            "camera_frames": self.camera_frames,
            "processed_hz": FPS * self.frames / self.camera_frames if self.camera_frames else float("nan"),
            "config": self.config,
        }

    def markdown(self) -> str:
        s = self.summary()
        step = self.config.get("frame_step", 1)
        if self.config.get("realtime"):
            which = f" of {s['camera_frames']}, replayed in real time: {s['processed_hz']:.1f} of the 30 a second"
        else:
            which = f", one in {step} of the sequences' frames" if step > 1 else ""
        lines = [
            f"# Sequences: {self.config.get('split')} ({self.config.get('mode')} mode, {s['frames']} frames{which})",
            "",
            "| object | pairs | ADD(-S) < 0.1 d | BOP visib_fract pairs | ADD(-S) < 0.1 d there | first correct (frames, mean) "
            "| never correct | re-acquisitions | wrong published | jitter mm (median / p95) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in s["objects"].items():
            lines.append(
                f"| {name} | {r['pairs']} | {100 * r['accuracy']:.1f} % | {r['bop_pairs']} | {100 * r['bop_accuracy']:.1f} % | "
                f"{r['first_correct_frames']:.1f} | "
                f"{r['never_correct']} | {r['reacquisitions']} | {r['wrong_published']} | "
                f"{r['jitter_mm_median']:.2f} / {r['jitter_mm_p95']:.2f} |"
            )
        lines += [
            "",
            f"ms per frame: first frame {s['ms_first_frame_mean']:.0f} (mean over sequences), "
            f"steady state median {s['ms_steady_median']:.0f}, p95 {s['ms_steady_p95']:.0f}",
        ]
        if self.config.get("realtime") and not np.isnan(s["objects"]["ALL"]["held_accuracy"]):  # NaN: no camera poses to hold them by
            held = ", ".join(f"{name} {100 * r['held_accuracy']:.1f} % / {r['held_wrong']} / {r['held_none_first']} + "
                             f"{r['held_none_after']}" for name, r in s["objects"].items())
            lines += ["", "held at every camera frame (ADD(-S) < 0.1 d / wrong held / visible without a pose: "
                          f"before the first + after it): {held}"]
        return "\n".join(lines) + "\n"


def _row(s: _ObjectStats) -> dict:
    return {
        "pairs": s.pairs,
        "accuracy": s.correct / s.pairs if s.pairs else float("nan"),
        "bop_pairs": s.bop_pairs,
        "bop_accuracy": s.bop_correct / s.bop_pairs if s.bop_pairs else float("nan"),
        "first_correct_frames": float(np.mean(s.first_correct_frames)) if s.first_correct_frames else float("nan"),
        "never_correct": s.never_correct,
        "reacquisitions": s.reacquisitions,
        "wrong_published": s.wrong_published,
        "jitter_mm_median": float(np.median(s.jitter_mm)) if s.jitter_mm else float("nan"),
        "jitter_mm_p95": float(np.percentile(s.jitter_mm, 95)) if s.jitter_mm else float("nan"),
        "jitter_pairs": len(s.jitter_mm),
        "held_accuracy": s.held_correct / s.held_pairs if s.held_pairs else float("nan"),
        "held_wrong": s.held_wrong,
        "held_none": s.held_none,
        "held_none_first": s.held_none_first,
        "held_none_after": s.held_none - s.held_none_first,
    }


def evaluate_sequences(
    runner_factory,
    dataset,
    catalog,
    *,
    min_visib: float = 0.1,
    warmup_s: float = 1.0,
    max_sequences: int | None = None,
    metric_points: int = 1000,
    progress: bool = False,
    frame_step: int = 1,
    realtime: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> SequenceResult:
    """Run ``runner_factory()`` (a fresh callable ``frame -> FrameResult`` per sequence) over
    every sequence (scene) of ``dataset`` (a :class:`~densefusion_ros.data.bop.BopDataset`).
    ``frame_step`` > 1 runs only every ``frame_step``-th frame (with their stamps), as a node sees
    a 30 Hz camera when it keeps up with only 30 / ``frame_step`` frames a second; only those
    frames are scored. ``realtime`` gives the runner the frames as a live 30 Hz camera would a node
    whose latest frame wins: frame ``k`` arrives ``k / 30`` s after the sequence's first, and when the
    runner is done with one frame it gets the latest that has arrived meanwhile, or waits for the
    next (the runner's own time on ``clock``, in seconds, sets the pace: results depend on the machine
    and its load)."""
    if realtime and frame_step != 1:
        raise ValueError("realtime replaces frame_step: give one of them")
    result = SequenceResult()
    points = {info.class_id: info.sample_points(metric_points) for info in catalog}
    scenes: dict[int, list[int]] = {}
    for scene_id, im_id in dataset.index:
        scenes.setdefault(int(scene_id), []).append(int(im_id))
    for n, (scene_id, im_ids) in enumerate(sorted(scenes.items())):
        if max_sequences is not None and n >= max_sequences:
            break
        runner = runner_factory()
        first_visible: dict[int, int] = {}
        first_correct: dict[int, int] = {}
        published_before: set[int] = set()
        gap_visible: dict[int, bool | None] = {}  # since the last pose: None = no gap, else visible throughout
        last_right: dict[int, tuple] = {}  # class id -> (track id, error pose) of its right pose in the last processed frame
        busy_until = 0.0  # realtime: when the runner is done with its last frame (s after the first frame's arrival)
        held: tuple[list, tuple] | None = None  # realtime: (poses, world -> camera of their frame) of the latest result arrived
        ever_held: set[int] = set()  # realtime: class ids that have had a held pose in this sequence
        pending: list[tuple[float, list, tuple]] = []  # realtime: (arrival (s), poses, world -> camera) of results not yet arrived
        for k, im_id in enumerate(sorted(im_ids)):
            frame = dataset.load_frame(scene_id, im_id)
            gts = list(frame.gt)
            result.camera_frames += 1
            in_view = [catalog.by_class_id(g.class_id) is not None and _visible(points[g.class_id], g, frame, min_visib) for g in gts]
            camera = dataset.world_to_camera(scene_id, im_id) if realtime else None
            if camera is not None:
                while pending and pending[0][0] <= k / FPS:
                    held = pending.pop(0)[1:]
                _score_held(result, held, camera, gts, in_view, points, catalog, ever_held)
            dropped = realtime and k + 1 < len(im_ids) and (k + 1) / FPS <= busy_until  # a newer frame is waiting
            if k % frame_step or dropped:  # not given to the runner; an object seen here already waits for its first correct pose
                for g, visible in zip(gts, in_view):
                    if visible:
                        first_visible.setdefault(int(g.class_id), k)
                continue
            start = clock()
            res = runner(replace(frame, gt=[], masks=None, label=None))
            ms = (clock() - start) * 1e3
            busy_until = max(busy_until, k / FPS) + ms / 1e3
            if camera is not None:
                pending.append((busy_until, list(res.instances), camera))
            result.frames += 1
            steady = k >= min(warmup_s * FPS, len(im_ids) // 2)
            (result.first_ms if k == 0 else result.steady_ms if steady else []).append(ms)
            matched, unmatched = _match_by_distance(gts, res.instances, points, catalog)
            right: dict[int, tuple] = {}
            for p in unmatched:  # a pose of an object not in the frame
                result.objects.setdefault(p.name, _ObjectStats()).wrong_published += 1
                result.rows.append(dict(scene=scene_id, frame=k, object=p.name, visible=0, visib_fract="",
                                        track_id=_track_id(p), error_d="", correct=0, wrong=1, jitter_mm=""))
            for g_index, g in enumerate(gts):
                info = catalog.by_class_id(g.class_id)
                if info is None:
                    continue
                stats = result.objects.setdefault(info.name, _ObjectStats())
                key = int(g.class_id)  # synth puts each catalog object in a scene at most once
                p, d = matched.get(g_index, (None, None))
                correct, jitter = False, None
                if p is not None:
                    correct = d < 0.1 * info.diameter
                    stats.wrong_published += not correct
                if correct:
                    right[key] = (p.track_id, relative(g.R, np.reshape(g.t, 3), p.R, np.reshape(p.t, 3)))  # the pose's error, object frame
                    if key in last_right and last_right[key][0] == p.track_id:
                        jitter = 1e3 * metrics.add_or_adds(*right[key][1], *last_right[key][1], points[g.class_id], info.symmetric)
                        stats.jitter_mm.append(jitter)
                if g.visib_fract >= min_visib:
                    stats.bop_pairs += 1
                    stats.bop_correct += correct
                visible = in_view[g_index]
                result.rows.append(dict(
                    scene=scene_id, frame=k, object=info.name, visible=int(visible), visib_fract=round(float(g.visib_fract), 3),
                    track_id="" if p is None else _track_id(p), error_d="" if d is None else round(float(d / info.diameter), 4),
                    correct=int(correct), wrong=int(p is not None and not correct), jitter_mm="" if jitter is None else round(jitter, 3),
                ))  # fmt: skip
                if visible:
                    stats.pairs += 1
                    stats.correct += correct
                    first_visible.setdefault(key, k)
                    if correct:
                        first_correct.setdefault(key, k)
                if p is not None:
                    stats.reacquisitions += gap_visible.get(key) is True
                    gap_visible[key] = None
                    published_before.add(key)
                elif key in published_before:
                    gap_visible[key] = visible and gap_visible.get(key) is not False
            for key in published_before - {int(g.class_id) for g in gts}:  # out of the ground truth: not visible
                gap_visible[key] = False
            last_right = right
        for key, k0 in first_visible.items():
            name = catalog.by_class_id(key).name
            if key in first_correct:
                result.objects[name].first_correct_frames.append(first_correct[key] - k0)
            else:
                result.objects[name].never_correct += 1
        if progress:
            print(f"sequence {scene_id}: {len(im_ids)} frames", flush=True)
    return result


def to_camera(R: np.ndarray, t: np.ndarray, then: tuple[np.ndarray, np.ndarray], now: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A pose ``(R (3, 3), t (3,))`` in the camera whose world -> camera pose was ``then`` (``(R, t)``,
    metres), in the camera at ``now``: a still object's pose held while the camera moves."""
    R_rel = now[0] @ then[0].T  # the camera then -> now
    return R_rel @ R, R_rel @ (np.reshape(t, 3) - then[1]) + now[1]


def _score_held(result: SequenceResult, held, camera, gts, in_view: list[bool], points, catalog, ever_held: set[int]) -> None:
    """Score the poses a robot holds at this camera frame (module docstring, **held**): ``held``
    (poses, world -> camera ``(R, t)`` of their frame) or None, moved into this frame's camera
    ``camera`` and matched to its ground truth ``gts`` (``in_view``: which are visible) as published
    poses are. A visible object without a held pose counts apart before the first held pose of its
    class in the sequence, right or wrong (``ever_held``: the class ids held so far, updated here)."""
    moved = [] if held is None else [replace(p, R=R, t=t) for p in held[0] for R, t in [to_camera(p.R, p.t, held[1], camera)]]
    matched, unmatched = _match_by_distance(gts, moved, points, catalog)
    for g_index, g in enumerate(gts):
        info = catalog.by_class_id(g.class_id)
        if info is None:
            continue
        stats = result.objects.setdefault(info.name, _ObjectStats())
        p, d = matched.get(g_index, (None, None))
        correct = p is not None and d < 0.1 * info.diameter
        stats.held_wrong += p is not None and not correct
        if in_view[g_index]:
            stats.held_pairs += 1
            stats.held_correct += correct
            stats.held_none += p is None
            stats.held_none_first += p is None and int(g.class_id) not in ever_held
        if p is not None:
            ever_held.add(int(g.class_id))
    for p in unmatched:  # held for an object no longer in the frame
        result.objects.setdefault(p.name, _ObjectStats()).held_wrong += 1


def _track_id(instance) -> int | str:
    """The instance's ``track_id``, or empty (detect mode)."""
    return "" if instance.track_id is None else int(instance.track_id)


def _visible(points: np.ndarray, gt, frame, min_visib: float) -> bool:
    """Whether at least ``min_visib`` of the object shows: its visible share of the image's pixels
    (occlusion) times the share of its model ``points`` inside the image (the border)."""
    return gt.visib_fract * share_in_image(points, gt.R, gt.t, frame.K, frame.depth_m.shape) >= min_visib


def _match_by_distance(gts, instances, points, catalog) -> tuple[dict[int, tuple[object, float]], list]:
    """GT index -> (the published pose of its class nearest to it, that ADD(-S) in metres), each
    pose used once; and the poses matched to none (of objects not in the frame)."""
    out: dict[int, tuple[object, float]] = {}
    used: set[int] = set()
    pairs = []
    for gi, g in enumerate(gts):
        info = catalog.by_class_id(g.class_id)
        if info is None:
            continue
        for pi, p in enumerate(instances):
            if p.class_id == g.class_id:
                pairs.append((metrics.add_or_adds(p.R, p.t, g.R, g.t, points[g.class_id], info.symmetric), gi, pi))
    for d, gi, pi in sorted(pairs, key=lambda x: x[0]):
        if gi not in out and pi not in used:
            out[gi] = (instances[pi], d)
            used.add(pi)
    return out, [p for pi, p in enumerate(instances) if pi not in used]


def run(args) -> int:
    """The ``evaluate --sequence`` command (arguments of :mod:`densefusion_ros.eval.evaluate`)."""
    import torch

    from densefusion_ros.data.bop import BopDataset
    from densefusion_ros.pipeline import Pipeline, PipelineConfig
    from densefusion_ros.runtime import cpu_threads
    from densefusion_ros.tracking import Tracker

    if args.realtime and args.frame_step != 1:
        raise SystemExit("evaluate --sequence: --realtime replaces --frame-step; give one of them")
    torch.set_num_threads(cpu_threads(args.threads))
    catalog_path = args.catalog or Path(args.dataset) / "catalog.yaml"
    config = PipelineConfig(seed=args.seed, device=args.device, refine_iterations=args.iterations)
    pipeline = Pipeline.from_checkpoints(args.weights, catalog_path, config, refiner=args.refiner, segmenter=args.segmenter)
    pipeline.warm_up()  # as the node does before its first frame: the first sequence's objects do not pay for it
    if args.mode == "track":
        tracker = Tracker(pipeline)

        def factory():
            tracker.reset()
            return tracker
    else:
        def factory():
            return pipeline

    dataset = BopDataset(args.dataset, args.split, load_masks=False)
    result = evaluate_sequences(
        factory, dataset, pipeline.catalog, max_sequences=args.max_sequences, progress=not args.no_progress, frame_step=args.frame_step,
        realtime=args.realtime,
    )  # fmt: skip
    result.config = {"dataset": str(args.dataset), "split": args.split, "mode": args.mode, "threads": torch.get_num_threads(),
                     "device": str(pipeline.device), "weights": str(args.weights), "frame_step": args.frame_step, "realtime": args.realtime}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequence_results.md").write_text(result.markdown())
    (out / "sequence_results.json").write_text(json.dumps(result.summary(), indent=2))
    result.write_rows(out / "sequence_frames.csv")
    print(result.markdown())
    return 0
