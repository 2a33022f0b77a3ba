"""Save everything the tracker publishes over a sequence split, and compare two saves exactly.

``python -m tools.tracker_outputs save OUT.pkl [--split seq_eval] [--step 2] [--scenes 0,2]``
runs the shipped tracker (bundled weights, catalog and segmenter, pipeline seed 0, one torch thread,
after ``Pipeline.warm_up``) over every ``step``-th frame of the split's sequences (a fresh tracker
per sequence) and saves, per frame, every published instance (track id, name, pose, fitness, rmse,
confidence, covariance, box, points, instance) and skip reason; it prints the mean ms a frame.
``python -m tools.tracker_outputs compare A.pkl B.pkl`` says how many frames differ in any of them,
bit for bit. Run ``save`` in two checkouts to show that a change meant to be faster publishes the
same poses (design note 'tracking: whole-image scans in a steady frame').
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import replace

import numpy as np
import torch

from densefusion_ros.data.bop import BopDataset
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.resources import share_path
from densefusion_ros.tracking import Tracker

FIELDS = ("track_id", "name", "R", "t", "icp_fitness", "icp_rmse", "confidence", "covariance", "box", "num_points", "instance")


def save(path: str, dataset_root: str, split: str, step: int, scenes: list[int] | None) -> None:
    """Run the tracker and pickle ``[(scene, frame, [instance fields], sorted skip reasons), ...]``."""
    torch.set_num_threads(1)
    pipeline = Pipeline.from_checkpoints(
        share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"), PipelineConfig(seed=0),
        refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
    )  # fmt: skip
    pipeline.warm_up()
    tracker = Tracker(pipeline)
    dataset = BopDataset(dataset_root, split, load_masks=False)
    frames, seconds, last_scene = [], 0.0, None
    for scene_id, im_id in sorted(dataset.index):
        if (scenes is not None and scene_id not in scenes) or im_id % step:
            continue
        if scene_id != last_scene:
            tracker.reset()
            last_scene = scene_id
        frame = replace(dataset.load_frame(scene_id, im_id), gt=[], masks=None, label=None)
        start = time.perf_counter()
        result = tracker(frame)
        seconds += time.perf_counter() - start
        instances = [tuple(_plain(getattr(i, f)) for f in FIELDS) for i in result.instances]
        frames.append((scene_id, im_id, instances, sorted(map(str, result.skipped))))
    with open(path, "wb") as f:
        pickle.dump(frames, f)
    print(f"{path}: {len(frames)} frames, {sum(len(x[2]) for x in frames)} poses, {1e3 * seconds / max(1, len(frames)):.1f} ms a frame")


def compare(path_a: str, path_b: str) -> int:
    """The number of frames whose saved outputs differ (each compared bit for bit); prints the first few."""
    with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
        a, b = pickle.load(fa), pickle.load(fb)
    if [x[:2] for x in a] != [x[:2] for x in b]:
        raise SystemExit("the two saves hold different frames")
    differ = [x[:2] for x, y in zip(a, b) if not _same(x[2:], y[2:])]
    for scene_id, im_id in differ[:5]:
        print(f"differs: sequence {scene_id} frame {im_id}")
    print(f"{len(a)} frames, {len(differ)} differ")
    return len(differ)


def _plain(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _same(x, y) -> bool:
    if isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
    return x == y or (x != x and y != y)  # NaN equals NaN here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("out")
    s.add_argument("--dataset", default=".data/seq")
    s.add_argument("--split", default="seq_eval")
    s.add_argument("--step", type=int, default=1)
    s.add_argument("--scenes", default=None, help="comma-separated sequence ids (default: all)")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args()
    if args.command == "save":
        save(args.out, args.dataset, args.split, args.step, None if args.scenes is None else [int(x) for x in args.scenes.split(",")])
    else:
        raise SystemExit(1 if compare(args.a, args.b) else 0)


if __name__ == "__main__":
    main()
