"""Time pipeline configurations on a BOP split, alternating them frame by frame.

``python -m tools.bench_configs "instances=largest" "instances=best" [--dataset .data/demo] [--split eval]``

Each positional argument is one variant: comma-separated ``key=value`` settings of
:class:`~densefusion_ros.pipeline.PipelineConfig` or of its
:class:`~densefusion_ros.icp.IcpOptions` (e.g. ``"icp=verify,verify_threads=1"``). Bundled
weights, segmenter masks (``--masks gt``: ground-truth ones). Prints each variant's mean and median ms per frame, the instances it
estimated and published, the share of visible ground-truth objects it put within 0.1 x diameter
(ADD(-S), as ``densefusion-ros evaluate`` matches them), and every variant's mean time over the
first's, all from one run, so the machine's drift falls on every variant alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from dataclasses import replace

import torch

from densefusion_ros.data.bop import BopDataset
from densefusion_ros.eval import metrics
from densefusion_ros.eval.evaluate import _input_frame, _match
from densefusion_ros.icp import IcpOptions
from densefusion_ros.pipeline import Pipeline, PipelineConfig
from densefusion_ros.resources import share_path


def convert_setting(value: str, default: object) -> object:
    """``value`` as the type of the field's default (numbers for None defaults)."""
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, str):
        return value
    number = float(value)
    return int(number) if isinstance(default, int) or (default is None and number.is_integer()) else number


def parse_variant(text: str) -> PipelineConfig:
    """``"key=value,..."`` -> a seeded PipelineConfig; keys of PipelineConfig or IcpOptions."""
    settings: dict[str, dict] = {"config": {}, "icp": {}}
    defaults = {"config": PipelineConfig(), "icp": IcpOptions()}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        kind = next((k for k, d in defaults.items() if key in {f.name for f in dataclasses.fields(d)}), None)
        if kind is None:
            raise SystemExit(f"unknown setting {key!r} (not a PipelineConfig or IcpOptions field)")
        settings[kind][key] = convert_setting(value, getattr(defaults[kind], key))
    return PipelineConfig(**{"seed": 0, **settings["config"], "icp_options": IcpOptions(**settings["icp"])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='e.g. "instances=largest" "instances=best"')
    parser.add_argument("--dataset", default=".data/demo")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--max-frames", type=int, default=0, help="0 = all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--masks", choices=("segmenter", "gt"), default="segmenter", help="where instance masks come from")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {
        v: Pipeline.from_checkpoints(
            share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"), parse_variant(v),
            refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
        )  # fmt: skip
        for v in args.variants
    }
    data = BopDataset(args.dataset, args.split)
    index = data.index[: args.max_frames or None]
    catalog = next(iter(pipes.values())).catalog
    frames, truths = [], []
    for s, i in index:
        frame, scored = _input_frame(data.load_frame(s, i), args.masks, catalog, min_visible_px=50)
        frames.append(replace(frame, gt=None))
        truths.append(scored)
    points = {info.class_id: info.sample_points(1000) for info in catalog}
    for frame in frames[:2]:  # warm-up
        for pipe in pipes.values():
            pipe(frame)
    ms = {v: [] for v in pipes}
    published = dict.fromkeys(pipes, 0)
    estimated = dict.fromkeys(pipes, 0)
    correct = dict.fromkeys(pipes, 0)
    for frame, scored in zip(frames, truths):
        for v, pipe in pipes.items():
            t0 = time.perf_counter()
            res = pipe(frame)
            ms[v].append((time.perf_counter() - t0) * 1e3)
            published[v] += len(res.instances)
            matched = _match(scored, res.instances)
            for k, g in scored:
                if k in matched:
                    info = catalog.by_class_id(g.class_id)
                    p = matched[k]
                    d = metrics.add_or_adds(p.R, p.t, g.R, g.t, points[g.class_id], info.symmetric)
                    correct[v] += d < 0.1 * info.diameter
            estimated[v] += len(res.instances) + sum("scored" in why for _, why in res.skipped)
    total = sum(len(s) for s in truths)
    print(f"# {args.split}: {len(frames)} frames, {total} visible objects, {torch.get_num_threads()} torch threads")
    first = args.variants[0]
    for v in args.variants:
        print(f"{v:40s} mean {statistics.mean(ms[v]):7.1f} ms/frame, median {statistics.median(ms[v]):7.1f};"
              f" instances estimated {estimated[v]}, published {published[v]};"
              f" ADD(-S) < 0.1 d {100 * correct[v] / max(1, total):5.1f} %;"
              f" mean / first {statistics.mean(ms[v]) / statistics.mean(ms[first]):.3f}")


if __name__ == "__main__":
    main()
