"""``densefusion-ros evaluate``: ADD, ADD-S and AUC on a BOP split, through the pipeline.

Usage::

    densefusion-ros evaluate --dataset DATA --split test --weights est.pth --refiner ref.pth \\
        [--masks gt|segmenter --segmenter seg.pth] [--iterations 2] [--icp] [--icp-verify] [--out eval_out] \\
        [--max-frames 200]
    densefusion-ros evaluate --sequence --dataset DATA --split seq_eval --weights est.pth --refiner ref.pth \
        --segmenter seg.pth [--mode track|detect]   (densefusion_ros.eval.sequence)

Every frame goes through :class:`densefusion_ros.pipeline.Pipeline` (the node's code path) once
per mode, with a fixed pipeline seed so that all modes see the same point samples:

* ``per-pixel``: the estimator's most confident hypothesis (no refiner);
* ``iterative``: plus ``--iterations`` refiner iterations (with ``--refiner``);
* ``...+icp``: plus Open3D ICP from that pose (with ``--icp``);
* ``...+verify``: plus ICP from 60 turns of that pose (the icosahedral group), checked against the depth image (with
  ``--icp-verify``; the pipeline's ``icp="verify"``);
* ``baseline``: model-free: the model's bounding-box centre at the centroid of the observed
  points (the same instance mask and sampling rule), with a random rotation.

Masks: ``gt`` passes each GT visible mask (merged per class id, since the pipeline takes one mask
per class) as ``Frame.masks``; ``segmenter`` runs the segmentation network once per frame (its
label image is reused for the other modes, and its time is added to each mode's timings).
Every mode first runs once, untimed, on the first frame (lazy CUDA and cuDNN set-up).

Per GT instance with at least ``--min-visible-px`` visible pixels, the distances ADD and ADD-S
(:mod:`densefusion_ros.eval.metrics`, model points from the catalog mesh) are computed;
ADD(-S) is ADD-S for symmetric objects and ADD otherwise. A GT instance without an estimate
(lost detection) gets ``inf`` and counts as a failure. Reported per object, ``ALL`` (instances
pooled, as the YCB-Video paper's table) and ``MEAN`` (mean of the per-object numbers):
AUC of ADD, ADD-S and ADD(-S) up to 0.1 m (YCB-Video toolbox VOCap), ADD-S and ADD(-S) < 2 cm,
and ADD(-S) < 0.1 x diameter (LineMOD). Poses of an object the frame does not contain (no
ground-truth instance of that class, visible or not) are counted per mode as *false detections*
(:func:`false_detections`), beside the table: the metrics above cannot see them. Writes
``results.md``, ``results.csv``, ``results.json`` and ``accuracy.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from densefusion_ros.eval import metrics

if TYPE_CHECKING:
    from densefusion_ros.catalog import Catalog

log = logging.getLogger("densefusion_ros.eval")

MODES = ("per-pixel", "iterative", "per-pixel+icp", "iterative+icp", "per-pixel+verify", "iterative+verify", "baseline")
STAGE_KEYS = ("segmentation", "preprocess", "estimator", "refiner", "icp", "total")
METRIC_COLUMNS = (
    ("auc_add", "AUC ADD"),
    ("auc_adds", "AUC ADD-S"),
    ("auc_add_s", "AUC ADD(-S)"),
    ("adds_2cm", "ADD-S<2cm"),
    ("add_s_2cm", "ADD(-S)<2cm"),
    ("add_s_01d", "ADD(-S)<0.1d"),
)


# ---------------------------------------------------------------------------------------------
# command line


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evaluate`` options to ``p``."""
    p.add_argument("--dataset", required=True, help="BOP dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--catalog", default=None, help="object catalog YAML (default: DATASET/catalog.yaml)")
    p.add_argument("--weights", required=True, help="estimator checkpoint")
    p.add_argument("--refiner", default=None, help="refiner checkpoint (adds the 'iterative' mode)")
    p.add_argument("--segmenter", default=None, help="segmenter checkpoint (for --masks segmenter)")
    p.add_argument("--masks", choices=("gt", "segmenter"), default=None, help="default: segmenter if given, else gt")
    p.add_argument("--iterations", type=int, default=2, help="refiner iterations (published: 2 YCB, 4 LineMOD)")
    p.add_argument("--icp", action="store_true", help="also evaluate with ICP after the network pose")
    p.add_argument("--icp-verify", action="store_true", help="also evaluate with hypothesise-and-verify ICP (icp='verify')")
    p.add_argument("--verify-hypotheses", type=int, default=0, help="turns tried by --icp-verify, nearest first (0 = all 60)")
    p.add_argument("--no-baseline", action="store_true", help="skip the model-free centroid baseline")
    p.add_argument("--num-points", type=int, default=None, help="points per instance (default: the checkpoint's)")
    p.add_argument("--metric-points", type=int, default=1000, help="model points for ADD / ADD-S")
    p.add_argument("--min-visible-px", type=int, default=50, help="GT instances with fewer visible pixels are not scored")
    p.add_argument("--max-frames", type=int, default=None, help="evenly thin the split to this many frames")
    p.add_argument("--out", default="eval_results", help="output folder")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores not busy at start)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--sequence", action="store_true",
                   help="each scene is a 30 Hz sequence: follow it (densefusion_ros.eval.sequence) instead of the per-frame modes")
    p.add_argument("--mode", choices=("track", "detect"), default="track", help="--sequence: the tracker, or the pipeline per frame")
    p.add_argument("--max-sequences", type=int, default=None, help="--sequence: only the first this many")
    p.add_argument("--frame-step", type=int, default=1,
                   help="--sequence: run every this many-th frame only (a node keeping up with 30 / this frames a second)")
    p.add_argument("--realtime", action="store_true",
                   help="--sequence: replay as a live 30 Hz camera, the latest frame wins (the pace is this machine's); "
                        "also scores the poses held at every camera frame")
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.sequence:
        from densefusion_ros.eval import sequence

        return sequence.run(args)
    import torch

    from densefusion_ros.runtime import cpu_threads

    torch.set_num_threads(cpu_threads(args.threads))
    result = evaluate(EvalConfig.from_args(args))
    result.config["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    paths = write_reports(result, args.out)
    print(result.markdown_summary())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog="densefusion-ros evaluate"))
    return run(parser.parse_args(argv))


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class EvalConfig:
    """What :func:`evaluate` is asked: one field per ``evaluate`` option (see :func:`configure_parser`).

    ``masks``: ``"gt"`` or ``"segmenter"``; ``None`` means the segmenter when one is given.
    ``num_points``: ``None`` takes the estimator checkpoint's. ``max_frames``: the split is thinned
    evenly (:func:`densefusion_ros.data.bop.evenly_spaced`).
    """

    dataset: str | Path
    weights: str | Path
    split: str = "test"
    catalog: str | Path | None = None
    refiner: str | Path | None = None
    segmenter: str | Path | None = None
    masks: str | None = None
    iterations: int = 2
    icp: bool = False
    icp_verify: bool = False
    verify_hypotheses: int = 0
    baseline: bool = True
    num_points: int | None = None
    metric_points: int = 1000
    min_visible_px: int = 50
    max_frames: int | None = None
    device: str = "cpu"
    seed: int = 0
    progress: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalConfig:
        """The config of parsed :func:`configure_parser` options (``--no-baseline``, ``--no-progress`` turned positive)."""
        values = vars(args)
        names = {f.name for f in fields(cls)} - {"baseline", "progress"}
        return cls(**{k: values[k] for k in names}, baseline=not values["no_baseline"], progress=not values["no_progress"])

    @property
    def mask_source(self) -> str:
        return self.masks or ("segmenter" if self.segmenter else "gt")


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class InstanceRecord:
    """One scored GT instance in one mode."""

    mode: str
    scene_id: int
    im_id: int
    class_id: int
    name: str
    symmetric: bool
    diameter: float
    visib_fract: float
    add: float
    adds: float
    confidence: float | None = None
    rot_err_deg: float | None = None  # metrics.rotation_error; None = lost
    rot_axis: tuple[float, float, float] | None = None

    @property
    def add_s(self) -> float:
        return self.adds if self.symmetric else self.add


@dataclass
class EvalResult:
    """What :func:`evaluate` returns: per-instance records, summaries and timings."""

    config: dict[str, Any]
    records: list[InstanceRecord] = field(default_factory=list)
    timings_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> stage -> mean ms/frame
    frames: int = 0
    false_detections: dict[str, int] = field(default_factory=dict)  # mode -> poses of absent objects

    @property
    def modes(self) -> list[str]:
        seen: list[str] = []
        for r in self.records:
            if r.mode not in seen:
                seen.append(r.mode)
        for m in self.timings_ms:
            if m not in seen:
                seen.append(m)
        return [m for m in MODES if m in seen] + [m for m in seen if m not in MODES]

    def summary(self, mode: str) -> dict[str, dict[str, float]]:
        """``{object name | "ALL" | "MEAN": {metric: value}}`` for one mode (percentages)."""
        recs = [r for r in self.records if r.mode == mode]
        names = sorted({r.name for r in recs}, key=lambda n: min(r.class_id for r in recs if r.name == n))
        out = {n: summarize([r for r in recs if r.name == n]) for n in names}
        if recs:
            out["ALL"] = summarize(recs)
            keys = [k for k, _ in METRIC_COLUMNS]
            out["MEAN"] = {k: float(np.mean([out[n][k] for n in names])) for k in keys}
            out["MEAN"]["n"] = float(len(recs))
            out["MEAN"]["lost"] = float(sum(out[n]["lost"] for n in names))
        return out

    def markdown_summary(self) -> str:
        """The ALL / MEAN comparison table of all modes."""
        lines = [
            "| mode | row | n | lost | " + " | ".join(h for _, h in METRIC_COLUMNS) + " | ms/frame |",
            "|---|---|---:|---:|" + "---:|" * len(METRIC_COLUMNS) + "---:|",
        ]
        for mode in self.modes:
            s = self.summary(mode)
            ms = self.timings_ms.get(mode, {}).get("total", float("nan"))
            for row in ("ALL", "MEAN"):
                if row not in s:
                    continue
                v = s[row]
                cells = " | ".join(_fmt(v[k]) for k, _ in METRIC_COLUMNS)
                lines.append(f"| {mode} | {row} | {int(v['n'])} | {int(v['lost'])} | {cells} | {_fmt(ms, 1)} |")
        return "\n".join(lines)


def summarize(recs: list[InstanceRecord]) -> dict[str, float]:
    """Metrics (percent) of a list of records; see the module docstring."""
    add = np.array([r.add for r in recs], dtype=np.float64)
    adds = np.array([r.adds for r in recs], dtype=np.float64)
    add_s = np.array([r.add_s for r in recs], dtype=np.float64)
    diam = np.array([r.diameter for r in recs], dtype=np.float64)
    finite = add_s[np.isfinite(add_s)]
    return {
        "n": float(len(recs)),
        "lost": float(np.sum(~np.isfinite(add_s))),
        "auc_add": metrics.auc(add),
        "auc_adds": metrics.auc(adds),
        "auc_add_s": metrics.auc(add_s),
        "adds_2cm": metrics.accuracy_below(adds, 0.02),
        "add_s_2cm": metrics.accuracy_below(add_s, 0.02),
        "add_s_01d": metrics.linemod_accuracy(add_s, diam),
        "median_add_s_mm": float(np.median(finite) * 1000.0) if finite.size else float("nan"),
    }


def half_turn_lines(recs: list[InstanceRecord], min_deg: float = 150.0) -> list[str]:
    """Per object not flagged symmetric, how many ADD < 0.1d misses are turns of at least
    ``min_deg`` and about which object axis (sign-free mean): many such misses about one axis mean
    a near-symmetry that the catalog does not flag, or that the data cannot resolve."""
    lines = []
    names = {r.name for r in recs if not r.symmetric}
    for name in sorted(names, key=lambda n: min(r.class_id for r in recs if r.name == n)):
        misses = [r for r in recs if r.name == name and not r.add_s < 0.1 * r.diameter]
        if not misses:
            continue
        turns = [r for r in misses if r.rot_err_deg is not None and r.rot_err_deg >= min_deg]
        text = f"- {name}: {len(turns)} of {len(misses)} misses are turns of {min_deg:.0f} degrees or more"
        if turns:
            a = np.array([r.rot_axis for r in turns])
            axis = np.linalg.eigh(a.T @ a)[1][:, -1]  # sign-free: an axis and its negative give the same half turn
            axis *= np.sign(axis[np.argmax(np.abs(axis))])
            share = float(np.mean(np.abs(a @ axis) > 0.9))
            text += f", {share * 100:.0f} % of them about the object axis [{axis[0]:.2f}, {axis[1]:.2f}, {axis[2]:.2f}]"
        lines.append(text)
    return ["Misses by rotation error:", "", *lines] if lines else []


def _fmt(v: float, digits: int = 2) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# evaluation


def _input_frame(frame: Any, masks: str, cat: Catalog, min_visible_px: int) -> tuple[Any, list]:
    """The frame as the pipeline gets it (ground-truth masks merged per class, or nothing for the
    segmenter) and the scored ground truth: ``[(index, gt)]`` of catalog objects visible enough."""
    scored = [
        (i, g) for i, g in enumerate(frame.gt)
        if cat.by_class_id(g.class_id) is not None and g.mask is not None and int(g.mask.sum()) >= min_visible_px
    ]  # fmt: skip
    if masks != "gt":
        return replace(frame, masks=None, label=None), scored
    merged: dict[int, np.ndarray] = {}
    for _, g in scored:
        merged[g.class_id] = merged.get(g.class_id, np.zeros_like(g.mask)) | g.mask
    return replace(frame, masks=merged, label=None), scored


def _match(gts: list[tuple[int, Any]], preds: list[Any]) -> dict[int, Any]:
    """GT position -> prediction of the same class id.

    Within a class, GT instances (largest visible mask first) are paired with predictions
    (most confident first); the pipeline gives one prediction per class by default.
    """
    out: dict[int, Any] = {}
    by_class: dict[int, list] = {}
    for p in preds:
        by_class.setdefault(int(p.class_id), []).append(p)
    for cid, plist in by_class.items():
        plist.sort(key=lambda p: -p.confidence)
        cands = sorted(((i, g) for i, g in gts if int(g.class_id) == cid), key=lambda ig: -int(ig[1].mask.sum()))
        for (i, _), p in zip(cands, plist):
            out[i] = p
    return out


def _baseline_pose(frame, mask: np.ndarray, info, num_points: int, rng: np.random.Generator):
    """Model-free pose: bounding-box centre at the observed points' centroid, random rotation."""
    from scipy.spatial.transform import Rotation

    from densefusion_ros.sampling import InstanceSkipped, prepare_instance

    try:
        inst = prepare_instance(frame.rgb, frame.depth_m, frame.K, mask, num_points=num_points, rng=rng)
    except InstanceSkipped:
        return None
    _, first = np.unique(inst.choose, return_index=True)
    centroid = inst.points[np.sort(first)].astype(np.float64).mean(axis=0)
    R = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    return R, centroid - R @ np.asarray(info.bbox_center, dtype=np.float64)


def evaluate(config: EvalConfig) -> EvalResult:
    """Run every mode of the module docstring on a BOP split; returns an :class:`EvalResult`."""
    from densefusion_ros.catalog import Catalog
    from densefusion_ros.data.bop import BopDataset, evenly_spaced

    cfg = config
    if cfg.mask_source == "segmenter" and not cfg.segmenter:
        raise SystemExit("--masks segmenter needs --segmenter CKPT")
    cat = Catalog.load(cfg.catalog or Path(cfg.dataset) / "catalog.yaml")
    bop = BopDataset(cfg.dataset, cfg.split, load_masks=True)
    frame_ids = evenly_spaced(len(bop.index), cfg.max_frames)
    pipes = _pipelines(cfg, cat)
    result = EvalResult(config=_config_record(cfg, cat, pipes["per-pixel"]))
    modes = list(pipes) + (["baseline"] if cfg.baseline else [])
    sums: dict[str, dict[str, float]] = {m: {k: 0.0 for k in STAGE_KEYS} for m in modes}
    model_pts = {o.class_id: o.sample_points(cfg.metric_points, seed=1) for o in cat}
    iterator: Iterable[int] = frame_ids
    if cfg.progress:
        from tqdm import tqdm

        iterator = tqdm(frame_ids, desc="evaluate", unit="frame", dynamic_ncols=True)
    if frame_ids:  # untimed warm-up: lazy CUDA / cuDNN set-up stays out of the per-frame timings
        warm, _ = _input_frame(bop.load_frame(*bop.index[frame_ids[0]]), cfg.mask_source, cat, cfg.min_visible_px)
        for pipe in pipes.values():
            pipe(warm)
    for f in iterator:
        _evaluate_frame(cfg, bop.index[f], bop, cat, pipes, model_pts, result, sums)
    n = max(result.frames, 1)
    result.timings_ms = {m: {k: v / n for k, v in s.items()} for m, s in sums.items()}
    return result


def _pipelines(cfg: EvalConfig, cat: Catalog) -> dict:
    """One :class:`~densefusion_ros.pipeline.Pipeline` per network mode, sharing the networks and a seed."""
    from densefusion_ros.models.checkpoint import load_estimator, load_refiner, load_segmenter
    from densefusion_ros.models.metadata import metadata_of
    from densefusion_ros.pipeline import Pipeline, PipelineConfig
    from densefusion_ros.runtime import resolve_device

    dev = resolve_device(cfg.device)
    est = load_estimator(cfg.weights, device=dev)
    ref = load_refiner(cfg.refiner, device=dev) if cfg.refiner else None
    seg = load_segmenter(cfg.segmenter, device=dev) if (cfg.segmenter and cfg.mask_source == "segmenter") else None
    n_pts = cfg.num_points or metadata_of(est).num_points or None
    base = PipelineConfig(num_points=n_pts, seed=cfg.seed, device=str(dev), keep_masks=True, icp="none")
    pipes = {"per-pixel": Pipeline(est, cat, replace(base, refine_iterations=0), segmenter=seg)}
    if ref is not None:
        pipes["iterative"] = Pipeline(est, cat, replace(base, refine_iterations=cfg.iterations), refiner=ref, segmenter=seg)
    if cfg.icp or cfg.icp_verify:
        try:
            import open3d  # noqa: F401
        except ImportError:
            log.warning("open3d is not installed: skipping the ICP modes")
            return pipes
        last = "iterative" if ref is not None else "per-pixel"
        for wanted, icp_mode, suffix in ((cfg.icp, "after", "+icp"), (cfg.icp_verify, "verify", "+verify")):
            if wanted:
                icp_cfg = replace(pipes[last].config, icp=icp_mode, icp_options=replace(base.icp_options))
                if icp_mode == "verify":
                    icp_cfg.icp_options.init_rotations = cfg.verify_hypotheses
                pipes[last + suffix] = Pipeline(est, cat, icp_cfg, refiner=ref if last == "iterative" else None, segmenter=seg)
    return pipes


def _config_record(cfg: EvalConfig, cat: Catalog, per_pixel) -> dict[str, Any]:
    """The settings as the reports show them (paths, resolved choices, hardware)."""
    from densefusion_ros.models.metadata import metadata_of

    config = {
        "dataset": str(Path(cfg.dataset).resolve()),
        "split": cfg.split,
        "catalog": str(cat.source),
        "weights": str(cfg.weights),
        "refiner": str(cfg.refiner) if cfg.refiner else None,
        "segmenter": str(cfg.segmenter) if cfg.segmenter else None,
        "masks": cfg.mask_source,
        "iterations": cfg.iterations,
        "icp": cfg.icp,
        "icp_verify": cfg.icp_verify,
        "verify_hypotheses": cfg.verify_hypotheses,
        "num_points": per_pixel.num_points,
        "metric_points": cfg.metric_points,
        "min_visible_px": cfg.min_visible_px,
        "seed": cfg.seed,
        "device": str(per_pixel.device),
        "estimator_backbone": metadata_of(per_pixel.estimator).backbone,
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine()},
    }
    try:
        import torch

        config["hardware"]["torch_threads"] = torch.get_num_threads()
        if per_pixel.device.type == "cuda":
            config["hardware"]["gpu"] = torch.cuda.get_device_name(per_pixel.device)
    except Exception:  # pragma: no cover
        pass
    return config


def _evaluate_frame(cfg: EvalConfig, key: tuple[int, int], bop, cat: Catalog, pipes: dict, model_pts: dict,
                    result: EvalResult, sums: dict[str, dict[str, float]]) -> None:  # fmt: skip
    """Every mode on one frame: its records, false detections and timings (added to ``sums``)."""
    scene_id, im_id = key
    frame, scored = _input_frame(bop.load_frame(scene_id, im_id), cfg.mask_source, cat, cfg.min_visible_px)
    seg_ms = 0.0
    first_result = None
    for mode, pipe in pipes.items():
        res = pipe(frame)
        if res.error:
            log.warning("frame %s/%s: %s", scene_id, im_id, res.error)
        if first_result is None:
            first_result = res
            if cfg.mask_source == "segmenter":
                seg_ms = res.timings_ms.get("segmentation", 0.0)
                frame = replace(frame, label=res.label)  # later modes reuse the segmentation
        t = dict(res.timings_ms)
        if mode != "per-pixel" and cfg.mask_source == "segmenter":
            t["segmentation"] = t.get("segmentation", 0.0) + seg_ms
            t["total"] = t.get("total", 0.0) + seg_ms
        for k in STAGE_KEYS:
            sums[mode][k] += float(t.get(k, 0.0))
        preds = {i: (p.R, p.t, p.confidence) for i, p in _match(scored, list(res.instances)).items()}
        result.false_detections[mode] = result.false_detections.get(mode, 0) + false_detections(frame.gt, res.instances)
        _score(result, mode, scene_id, im_id, scored, preds, cat, model_pts)
    if cfg.baseline and first_result is not None:
        rng = np.random.default_rng([cfg.seed, scene_id, im_id])
        t0 = time.perf_counter()
        preds = {}
        for i, p in _match(scored, list(first_result.instances)).items():
            info = cat.by_class_id(p.class_id)
            pose = _baseline_pose(frame, p.mask, info, pipes["per-pixel"].num_points, rng) if p.mask is not None else None
            if pose is not None:
                preds[i] = (pose[0], pose[1], None)
        dt = (time.perf_counter() - t0) * 1e3 + first_result.timings_ms.get("segmentation", 0.0)
        sums["baseline"]["total"] += dt
        _score(result, "baseline", scene_id, im_id, scored, preds, cat, model_pts)
    result.frames += 1


def false_detections(gt: list | None, instances: list) -> int:
    """How many of ``instances`` (pipeline results) are of a class id with no ground-truth object in ``gt``."""
    present = {int(g.class_id) for g in gt or []}
    return sum(int(p.class_id) not in present for p in instances)


def _score(result: EvalResult, mode: str, scene_id: int, im_id: int, scored, preds, cat, model_pts) -> None:
    for i, g in scored:
        info = cat.by_class_id(g.class_id)
        pts = model_pts[g.class_id]
        if i in preds:
            R, t, conf = preds[i]
            add = metrics.add(R, t, g.R, g.t, pts)
            adds = metrics.adds(R, t, g.R, g.t, pts)
            angle, axis = metrics.rotation_error(R, g.R)
            axis = tuple(float(a) for a in axis)
        else:
            add = adds = math.inf
            conf = angle = axis = None
        result.records.append(
            InstanceRecord(
                mode=mode, scene_id=int(scene_id), im_id=int(im_id), class_id=int(g.class_id), name=info.name,
                symmetric=bool(info.symmetric), diameter=float(info.diameter), visib_fract=float(g.visib_fract),
                add=float(add), adds=float(adds), confidence=None if conf is None else float(conf),
                rot_err_deg=angle, rot_axis=axis,
            )
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# reports


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


def write_reports(result: EvalResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.csv``, ``results.json`` and ``accuracy.png``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {m: result.summary(m) for m in result.modes}
    # JSON
    js = {
        "config": result.config,
        "frames": result.frames,
        "summary": summaries,
        "timings_ms": result.timings_ms,
        "false_detections": result.false_detections,
        "instances": [
            {k: getattr(r, k) for k in ("mode", "scene_id", "im_id", "class_id", "name", "symmetric", "visib_fract", "add", "adds",
                                        "confidence", "rot_err_deg", "rot_axis")}
            for r in result.records
        ],
    }
    p_json = out / "results.json"
    p_json.write_text(json.dumps(_json_safe(js), indent=1))
    # CSV
    p_csv = out / "results.csv"
    cols = ["n", "lost", *[k for k, _ in METRIC_COLUMNS], "median_add_s_mm"]
    with p_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "object", *cols, "ms_per_frame"])
        for mode, s in summaries.items():
            ms = result.timings_ms.get(mode, {}).get("total", float("nan"))
            for obj, v in s.items():
                w.writerow([mode, obj, *[_fmt(v.get(c, float("nan")), 4) for c in cols], _fmt(ms, 2)])
    # Markdown
    c = result.config
    lines = [
        "# DenseFusion evaluation",
        "",
        f"Dataset `{c.get('dataset')}` split `{c.get('split')}`: {result.frames} frames, masks from **{c.get('masks')}**, "
        f"{c.get('num_points')} points per instance, {c.get('iterations')} refiner iterations, device {c.get('device')}.",
        f"Estimator `{c.get('weights')}`" + (f", refiner `{c.get('refiner')}`" if c.get("refiner") else "")
        + (f", segmenter `{c.get('segmenter')}`" if c.get("segmenter") else "") + ".",
        "",
        "Percentages. AUC: area under the accuracy-threshold curve up to 0.1 m (YCB-Video VOCap). ADD(-S): ADD-S for "
        "symmetric objects, ADD otherwise. 0.1d: LineMOD threshold (10 % of the diameter). ALL pools the instances, "
        "MEAN averages the objects. Lost detections count as failures.",
        "",
        "## Summary",
        "",
        result.markdown_summary(),
        "",
        "False detections (poses of an object the frame does not contain; not in the table): "
        + (", ".join(f"{m} {n}" for m, n in result.false_detections.items()) or "none counted") + ".",
        "",
        "## Timings (mean ms per frame)",
        "",
        "| mode | " + " | ".join(STAGE_KEYS) + " | frames/s |",
        "|---|" + "---:|" * (len(STAGE_KEYS) + 1),
    ]
    for mode in result.modes:
        t = result.timings_ms.get(mode, {})
        tot = t.get("total", float("nan"))
        fps = 1000.0 / tot if tot and tot > 0 else float("nan")
        lines.append(f"| {mode} | " + " | ".join(_fmt(t.get(k, float('nan')), 1) for k in STAGE_KEYS) + f" | {_fmt(fps, 2)} |")
    for mode, s in summaries.items():
        lines += ["", f"## {mode}", "", "| object | n | lost | " + " | ".join(h for _, h in METRIC_COLUMNS) + " | median ADD(-S) mm |",
                  "|---|---:|---:|" + "---:|" * (len(METRIC_COLUMNS) + 1)]  # fmt: skip
        for obj, v in s.items():
            lines.append(
                f"| {obj} | {int(v['n'])} | {int(v['lost'])} | " + " | ".join(_fmt(v[k]) for k, _ in METRIC_COLUMNS)
                + f" | {_fmt(v.get('median_add_s_mm', float('nan')), 1)} |"
            )
        lines += ["", *half_turn_lines([r for r in result.records if r.mode == mode])]
    p_md = out / "results.md"
    p_md.write_text("\n".join(lines) + "\n")
    p_png = out / "accuracy.png"
    plot_accuracy(result, p_png)
    return [p_md, p_csv, p_json, p_png]


def plot_accuracy(result: EvalResult, path: str | Path, max_threshold: float = 0.1) -> Path:
    """Accuracy (%) versus threshold (m) of ADD(-S) (solid) and ADD-S (dashed), instances pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = np.linspace(0.0, max_threshold, 201)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for k, mode in enumerate(result.modes):
        recs = [r for r in result.records if r.mode == mode]
        if not recs:
            continue
        color = f"C{k}"
        add_s = np.array([r.add_s for r in recs])
        adds = np.array([r.adds for r in recs])
        ax.plot(thr, metrics.accuracy_curve(add_s, thr), color=color, label=f"{mode} ADD(-S) (AUC {metrics.auc(add_s):.1f})")
        ax.plot(thr, metrics.accuracy_curve(adds, thr), color=color, ls="--", label=f"{mode} ADD-S (AUC {metrics.auc(adds):.1f})")
    ax.set_xlabel("threshold (m)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, max_threshold)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{result.config.get('split', '')}: {result.frames} frames, masks {result.config.get('masks')}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


if __name__ == "__main__":
    sys.exit(main())
