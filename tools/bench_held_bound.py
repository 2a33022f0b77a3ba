"""What staleness alone costs a runner replayed in real time: the true poses, a fixed time a frame.

``python -m tools.bench_held_bound --split seq_eval --seconds 0.13,0.26 [--dataset .data/seq]``

For each time, ``evaluate_sequences(realtime=True)`` runs a runner that returns every object's true
pose (so each pose it publishes is right) and takes that many seconds a frame on the evaluation's
own clock. Its **held** accuracy (:mod:`densefusion_ros.eval.sequence`) is the most a runner of that
pace can reach: objects pushed, turned and carried move between its results, and nothing is held
before its first. Compare a real runner's held accuracy with this bound at its own frames a second
(``python -m tools.bench_tracker ... --realtime``).
"""

from __future__ import annotations

import argparse

import numpy as np

from densefusion_ros.catalog import Catalog
from densefusion_ros.data.bop import BopDataset
from densefusion_ros.eval.sequence import evaluate_sequences
from densefusion_ros.frame import Frame
from densefusion_ros.pipeline import FrameResult, InstanceResult
from densefusion_ros.resources import share_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=".data/seq")
    parser.add_argument("--split", default="seq_eval")
    parser.add_argument("--seconds", default="0.13,0.26", help="comma-separated times a frame (s)")
    args = parser.parse_args()
    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    dataset = BopDataset(args.dataset, args.split, load_masks=False)
    truth = {}  # stamp -> ground truth, filled as the evaluation loads each frame

    class Recording:
        index = dataset.index

        def load_frame(self, scene_id: int, im_id: int) -> Frame:
            frame = dataset.load_frame(scene_id, im_id)
            truth[frame.stamp] = frame.gt
            return frame

        def world_to_camera(self, scene_id: int, im_id: int):
            return dataset.world_to_camera(scene_id, im_id)

    for seconds in (float(s) for s in args.seconds.split(",")):
        clock = [0.0]

        def true_poses(frame: Frame) -> FrameResult:
            clock[0] += seconds
            return FrameResult(instances=[
                InstanceResult(catalog.by_class_id(g.class_id).name, g.class_id, 0, 0, g.R, g.t, np.array([1.0, 0, 0, 0]), 1.0, (0, 1, 0, 1), 1)
                for g in truth[frame.stamp] if catalog.by_class_id(g.class_id) is not None])  # fmt: skip

        summary = evaluate_sequences(lambda: true_poses, Recording(), catalog, realtime=True, clock=lambda: clock[0]).summary()
        objects = {k: v for k, v in summary["objects"].items() if k != "ALL"}
        pooled = summary["objects"]["ALL"]
        per_object = " ".join(f"{k} {100 * v['held_accuracy']:.1f}/{v['held_wrong']}" for k, v in sorted(objects.items()))
        print(f"{seconds:.3f} s a frame ({summary['processed_hz']:.1f} frames a second): held {100 * pooled['held_accuracy']:.1f} % "
              f"[{per_object}]; {pooled['held_wrong']} wrong held; without a pose {pooled['held_none_first']} before the first + "
              f"{pooled['held_none_after']} after", flush=True)


if __name__ == "__main__":
    main()
