"""What an acquisition costs: the pipeline (networks + verification) on one object's segmenter mask.

``python -m tools.bench_acquisition "" "refine_iterations=0" [--split seq_val] [--dataset .data/seq] [--threads 1]``

First the time each catalog object's model geometry takes to build (``Pipeline.model_geometry``,
which ``Pipeline.warm_up`` builds before a node's first frame). Then, per variant (comma-separated
``key=value`` settings of :class:`~densefusion_ros.pipeline.PipelineConfig` or
:class:`~densefusion_ros.icp.IcpOptions`; ``""`` = the defaults), the pipeline on every object's
segmenter mask (at least 200 pixels) of every 30th frame of the split's sequences, one object a call
as the tracker acquires: how many poses are right (ADD(-S) < 0.1 d), wrong, or not published, and
the mean ms per call by stage. The variants alternate in a second, timed pass after an untimed one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from densefusion_ros.data.bop import BopDataset
from densefusion_ros.eval import metrics
from densefusion_ros.pipeline import Pipeline
from densefusion_ros.resources import share_path
from tools.bench_tracker import parse_tracker_variant

STAGES = ("estimator", "refiner", "icp", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='e.g. "" "refine_iterations=0"')
    parser.add_argument("--dataset", default=".data/seq")
    parser.add_argument("--split", default="seq_val")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {}
    for variant in args.variants:
        config, _ = parse_tracker_variant(variant)
        pipes[variant] = Pipeline.from_checkpoints(
            share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"), config,
            refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
        )  # fmt: skip
    first = pipes[args.variants[0]]
    for info in first.catalog:
        start = time.perf_counter()
        first.model_geometry(info)
        print(f"model geometry of {info.name}: {1e3 * (time.perf_counter() - start):.0f} ms", flush=True)
    for pipe in pipes.values():
        pipe.warm_up()
    dataset = BopDataset(args.dataset, args.split, load_masks=False)
    jobs = []
    for scene_id, im_id in sorted(dataset.index):
        if im_id % 30 == 0:
            frame = dataset.load_frame(scene_id, im_id)
            labels = first.segment(frame.rgb)
            jobs += [(replace(frame, gt=[], masks={int(g.class_id): labels == g.class_id}, label=None), g)
                     for g in frame.gt if (labels == g.class_id).sum() >= 200]  # fmt: skip
    points = {info.class_id: info.sample_points(1000) for info in first.catalog}
    for timed in (False, True):
        for variant, pipe in pipes.items():
            right = wrong = none = 0
            ms = dict.fromkeys(STAGES, 0.0)
            for frame, g in jobs:
                result = pipe(frame)
                info = pipe.catalog.by_class_id(g.class_id)
                errors = [metrics.add_or_adds(i.R, i.t, g.R, np.reshape(g.t, 3), points[g.class_id], info.symmetric) / info.diameter
                          for i in result.instances]  # fmt: skip
                right, wrong, none = right + sum(e < 0.1 for e in errors), wrong + sum(e >= 0.1 for e in errors), none + (not errors)
                for stage in STAGES:
                    ms[stage] += result.timings_ms[stage]
            if timed:
                stages = ", ".join(f"{stage} {v / len(jobs):.1f}" for stage, v in ms.items())
                print(f"{variant or '(defaults)':36s} {len(jobs)} objects: right {right}, wrong {wrong}, none {none}; "
                      f"ms a call: {stages}", flush=True)


if __name__ == "__main__":
    main()
