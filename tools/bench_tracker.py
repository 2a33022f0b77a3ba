"""Compare tracker settings on sequence splits over several pipeline seeds.

``python -m tools.bench_tracker "" "climb_violation=1" [--dataset .data/seq] [--split seq_val] [--seeds 0,1,2] [--mode detect] [--max-sequences N]``

Each positional argument is one variant: comma-separated ``key=value`` settings of
:class:`~densefusion_ros.tracking.TrackerOptions`, :class:`~densefusion_ros.pipeline.PipelineConfig`
or :class:`~densefusion_ros.icp.IcpOptions` (``""`` = the defaults). Bundled weights, segmenter
masks, ``evaluate --sequence``'s scoring (``--mode detect``: the pipeline on every frame, no
tracker, so TrackerOptions keys change nothing). Per seed and variant it prints the share of visible
object-frames within 0.1 x diameter (ADD(-S)), per object (``name accuracy/wrong poses``, so that
the mug's turn can be told from the rest), the wrong poses published and the steady-state median and
p95 ms per frame; then each variant's mean over the seeds. The pseudo-setting ``compile_icp_step=1``
runs ICP's step through ``torch.compile`` (an experiment for the GPU, where the step's hundred small
operations are as many kernel launches; design note 'verify: the ICP step through torch.compile'),
after one sequence that warms the compiler up. One seed's figure moves by several points (the mug's
episodes: docs/benchmarks/sequences_track_seeds.md), so choose on the means. Variants run one after
another per seed, not frame by frame: compare their times only within one run.

With ``--realtime`` the pseudo-settings ``acquisition_share=S`` and ``segmentation_share=S`` (S in
0..1) count only the share ``S`` of each frame's acquisition stages (the pipeline's ``preprocess``,
``estimator``, ``refiner`` and ``icp`` timings; with ``--mode detect`` every frame's) or of its
``segmentation`` timing (the tracker's: the segmenter, the class masks and their components, the
support plane) on the replay's clock, as if they ran that much faster: what a cheaper stage would be
worth to what a robot holds, before it is built (design note 'tracking: what an acquisition's time
is worth'). The ms a frame printed are then those of that clock too.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from densefusion_ros import verify
from densefusion_ros.data.bop import BopDataset
from densefusion_ros.eval.sequence import evaluate_sequences
from densefusion_ros.frame import Frame
from densefusion_ros.pipeline import FrameResult, Pipeline, PipelineConfig
from densefusion_ros.resources import share_path
from densefusion_ros.tracking import Tracker, TrackerOptions
from tools.bench_configs import convert_setting, parse_variant

EAGER_STEP = verify._icp_step
COMPILE_STEP = "compile_icp_step=1"
SHARES = {"acquisition_share": ("preprocess", "estimator", "refiner", "icp"), "segmentation_share": ("segmentation",)}
"""The pseudo-settings of the stages' shares counted in real time, and the ``FrameResult.timings_ms`` keys of each."""


def parse_tracker_variant(text: str, seed: int = 0) -> tuple[PipelineConfig, dict[str, object]]:
    """``"key=value,..."`` -> (a PipelineConfig with ``seed``, TrackerOptions keyword arguments);
    keys of TrackerOptions, PipelineConfig or IcpOptions."""
    tracker_fields = {f.name: f.default for f in dataclasses.fields(TrackerOptions)}
    tracker, rest = {}, []
    for item in filter(None, text.split(",")):
        if item == COMPILE_STEP or item.partition("=")[0] in SHARES:
            continue
        key, _, value = item.partition("=")
        if key in tracker_fields:
            tracker[key] = convert_setting(value, tracker_fields[key])
        else:
            rest.append(item)
    return dataclasses.replace(parse_variant(",".join(rest)), seed=seed), tracker


def stage_shares(text: str) -> dict[str, float]:
    """The pseudo-settings of :data:`SHARES` in ``"key=value,..."`` (``parse_tracker_variant`` skips them)."""
    shares = {key: value for key, _, value in (item.partition("=") for item in text.split(",")) if key in SHARES}
    for key, value in shares.items():
        try:
            shares[key] = float(value)
        except ValueError:
            raise SystemExit(f"{key} needs a share from 0 to 1, got {value!r}") from None
        if not 0.0 <= shares[key] <= 1.0:
            raise SystemExit(f"{key} needs a share from 0 to 1, got {value!r}")
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='e.g. "" "climb_violation=1"')
    parser.add_argument("--dataset", default=".data/seq")
    parser.add_argument("--split", default="seq_val")
    parser.add_argument("--seeds", default="0,1,2", help="pipeline seeds (the points the networks sample)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frame-step", type=int, default=1, help="every this many-th frame only (evaluate_sequences' frame_step)")
    parser.add_argument("--realtime", action="store_true", help="a live 30 Hz camera, the latest frame wins (evaluate_sequences' realtime)")
    parser.add_argument("--mode", choices=("track", "detect"), default="track",
                        help="detect: every frame on its own through the pipeline (the node's mode: detect)")
    parser.add_argument("--max-sequences", type=int, default=None, help="the first this many sequences only")
    args = parser.parse_args()
    if args.realtime and args.frame_step != 1:
        parser.error("--realtime replaces --frame-step; give one of them")
    if not args.realtime and any(stage_shares(v) for v in args.variants):
        parser.error(f"{', '.join(SHARES)} need --realtime")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    dataset = BopDataset(args.dataset, args.split, load_masks=False)
    accuracy: dict[str, list[float]] = {v: [] for v in args.variants}
    wrong: dict[str, list[int]] = {v: [] for v in args.variants}
    held: dict[str, list[float]] = {v: [] for v in args.variants}
    for seed in seeds:
        for variant in args.variants:
            config, options = parse_tracker_variant(variant, seed)
            pipeline = Pipeline.from_checkpoints(
                share_path("models", "estimator.pth"), share_path("config", "objects", "demo.yaml"), config,
                refiner=share_path("models", "refiner.pth"), segmenter=share_path("models", "segmenter.pth"),
            )  # fmt: skip
            pipeline.warm_up()  # as the node does
            tracker = Tracker(pipeline, **options)

            shares = stage_shares(variant)
            uncounted = [0.0]  # seconds of the runner's stages left off the replay's clock

            def clock() -> float:
                return time.perf_counter() - uncounted[0]

            def fresh() -> Callable[[Frame], FrameResult]:
                tracker.reset()
                runner = tracker if args.mode == "track" else pipeline
                if not shares:
                    return runner

                def counted(frame: Frame) -> FrameResult:
                    result = runner(frame)
                    for key, share in shares.items():
                        uncounted[0] += (1 - share) * sum(result.timings_ms.get(stage, 0.0) for stage in SHARES[key]) / 1e3
                    return result

                return counted

            compiled = COMPILE_STEP in variant.split(",")
            verify._icp_step = torch.compile(EAGER_STEP, dynamic=True) if compiled else EAGER_STEP
            if compiled:
                evaluate_sequences(fresh, dataset, pipeline.catalog, max_sequences=1, frame_step=args.frame_step)
            summary = evaluate_sequences(fresh, dataset, pipeline.catalog, frame_step=args.frame_step,
                                         max_sequences=args.max_sequences, realtime=args.realtime, clock=clock).summary()
            objects = {k: v for k, v in summary["objects"].items() if k != "ALL"}
            pooled = summary["objects"]["ALL"]
            accuracy[variant].append(100 * pooled["accuracy"])
            wrong[variant].append(pooled["wrong_published"])
            held[variant].append(100 * pooled["held_accuracy"])
            realtime = (f"; {summary['processed_hz']:.1f} frames a second; held at every camera frame "
                        f"{100 * pooled['held_accuracy']:.1f} %, {pooled['held_wrong']} wrong, without a pose {pooled['held_none_first']} "
                        f"before the first + {pooled['held_none_after']} after") if args.realtime else ""
            per_object = " ".join(f"{k} {100 * v['accuracy']:.1f}/{v['wrong_published']}" for k, v in sorted(objects.items()))
            print(f"seed {seed} {variant or '(defaults)':40s} ADD(-S) < 0.1 d {100 * pooled['accuracy']:5.1f} % [{per_object}]; "
                  f"wrong published {pooled['wrong_published']}; ms median {summary['ms_steady_median']:.0f}, "
                  f"p95 {summary['ms_steady_p95']:.0f}" + realtime,
                  flush=True)
    for variant in args.variants:
        print(f"mean over seeds {args.seeds}: {variant or '(defaults)':40s} {statistics.mean(accuracy[variant]):5.1f} %, "
              f"wrong published {statistics.mean(wrong[variant]):.0f}" + (f"; held {statistics.mean(held[variant]):.1f} %" if args.realtime else ""))


if __name__ == "__main__":
    main()
