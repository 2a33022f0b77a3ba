"""Time the pipeline's instance rules on a BOP split, alternating them frame by frame.

``python scripts/bench_instance_rules.py [--dataset .data/demo] [--split eval] [--rules largest,best]``:
segmenter masks, bundled weights, no ICP. Prints the mean and median ms per frame of each rule,
how many instances each estimated and published, and the ratio of the mean times (one run, so
the machine's drift falls on every rule alike).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from densefusion_ros.data.bop import BopDataset
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.resources import share_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=".data/demo")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--rules", default="largest,best", help="comma-separated PipelineConfig.instances values")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rules = args.rules.split(",")
    pipes = {
        rule: Pipeline.from_checkpoints(
            share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"),
            PipelineConfig(seed=0, instances=rule),
            refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
        )  # fmt: skip
        for rule in rules
    }
    data = BopDataset(args.dataset, args.split)
    frames = [replace(data.load_frame(s, i), gt=None) for s, i in data.index]
    for frame in frames[:3]:  # warm-up
        for pipe in pipes.values():
            pipe(frame)
    ms = {rule: [] for rule in rules}
    published = dict.fromkeys(rules, 0)
    estimated = dict.fromkeys(rules, 0)
    for frame in frames:
        for rule, pipe in pipes.items():
            t0 = time.perf_counter()
            res = pipe(frame)
            ms[rule].append((time.perf_counter() - t0) * 1e3)
            published[rule] += len(res.instances)
            estimated[rule] += len(res.instances) + sum("scored" in why for _, why in res.skipped)
    print(f"# {args.split}: {len(frames)} frames, {torch.get_num_threads()} threads, no ICP")
    for rule in rules:
        print(f"{rule:8s} mean {statistics.mean(ms[rule]):6.1f} ms/frame, median {statistics.median(ms[rule]):6.1f};"
              f" instances estimated {estimated[rule]}, published {published[rule]}")
    for rule in rules[1:]:
        print(f"{rule} / {rules[0]} mean time: {statistics.mean(ms[rule]) / statistics.mean(ms[rules[0]]):.3f}")


if __name__ == "__main__":
    main()
