"""Time the pipeline stages, batched versus the published per-object loop, in one run.

``python -m tools.bench_pipeline``. Random-weight networks (:mod:`tools.random_networks`)
(published ``psp_resnet18`` and ``compact`` color backbones) and synthetic frames with 1, 2, 4,
8 objects (random elliptic masks, slightly raised above a tilted plane of depth). Three modes see
the same frames, points and ``choose`` (fixed seed) and give the same poses (tests assert it):

* ``batched``: the pipeline as configured by default (CNN per crop-size group, estimator heads
  through ``DenseFusionEstimator.forward_best`` (``fast_head``), on a CPU point rows in
  cache-sized blocks (``cpu_point_rows``), BatchNorm folded into the convolutions);
* ``plain``: batching only (``fast_head=False``, ``cpu_point_rows=False``, ``fuse_batchnorm=False``):
  every network call holds all instances (the CNN: all crops of one size);
* ``loop``: the published one-object-at-a-time inference (:meth:`Pipeline.run_per_object`).

Ratios are ``loop / mode`` measured in the same process with the modes interleaved run by run,
CPU always, CUDA fp32 and fp16 when available. Segmentation is the same single full-image pass in
every mode, so the frames carry label images and the compact segmenter is timed on its own
(``seg ms``, at ``--seg-scale``); ``fps`` is end to end, ``1000 / (seg ms + batched total ms)``.
On CUDA the batched modes replay CUDA graphs (``PipelineConfig.cuda_graphs``, captured in the
warm-up runs) and a fourth mode, ``eager``, is the batched pipeline without them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from densefusion_ros.catalog import Catalog, ObjectInfo, resolve_mesh_path
from densefusion_ros.frame import Frame
from densefusion_ros.models.metadata import CheckpointMeta
from tools.random_networks import random_networks

__all__ = ["synthetic_frame", "synthetic_catalog", "configure_parser", "run", "main"]

BENCH_STAGES = ("preprocess", "estimator", "refiner", "total")


def synthetic_catalog(num_objects: int, mesh_path: str = "pybullet_data://duck.obj") -> Catalog:
    """``num_objects`` catalog entries ``obj_1..`` with class ids 1.., indices 0.. (mesh only for ICP/overlay)."""
    try:
        path = resolve_mesh_path(mesh_path, base_dir=Path.cwd())
    except ImportError:  # pybullet_data absent: the mesh is only needed for ICP and overlays
        path = Path(mesh_path)
    return Catalog(
        [
            ObjectInfo(name=f"obj_{i + 1}", class_id=i + 1, index=i, mesh_path=path, scale=np.full(3, 0.08))
            for i in range(num_objects)
        ]
    )


def synthetic_frame(
    num_objects: int,
    *,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    min_radius: int = 20,
    max_radius: int = 70,
) -> Frame:
    """An RGB-D frame with ``num_objects`` non-overlapping elliptic objects (class ids 1..n) on a plane.

    Depth: a plane tilted about x, 0.8-1.0 m away, objects 2-6 cm in front of it; a few random
    holes (depth 0). ``frame.label`` holds the class ids; ``frame.masks`` is left None.
    """
    rng = np.random.default_rng(seed)
    f = 1.2 * max(height, width)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    rows, cols = np.mgrid[0:height, 0:width]
    depth = (0.8 + 0.2 * rows / max(height - 1, 1)).astype(np.float32)
    rgb = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    label = np.zeros((height, width), np.uint16)
    max_radius = max(min(max_radius, min(height, width) // 3), min_radius + 1)
    for cid in range(1, num_objects + 1):
        for _ in range(100):  # rejection sampling for a free spot
            ry, rx = rng.integers(min_radius, max_radius, size=2)
            cy = rng.integers(ry, max(height - ry, ry + 1))
            cx = rng.integers(rx, max(width - rx, rx + 1))
            ell = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
            if not (label[ell] != 0).any():
                break
        label[ell] = cid
        bump = 0.02 + 0.04 * np.sqrt(np.clip(1 - ((rows - cy) / ry) ** 2 - ((cols - cx) / rx) ** 2, 0, 1))
        depth[ell] -= bump[ell].astype(np.float32)
        rgb[ell] = (rgb[ell] * 0.3 + rng.integers(0, 255, 3) * 0.7).astype(np.uint8)
    depth[rng.random((height, width)) < 0.01] = 0.0
    return Frame(rgb=rgb, depth_m=depth, K=K, label=label)


# ----------------------------------------------------------------------------------------------


@dataclass
class _Row:
    device: str
    precision: str
    backbone: str
    objects: int
    batched: dict[str, float]
    loop: dict[str, float]
    plain: dict[str, float]
    seg_ms: float
    eager: dict[str, float] | None = None

    @property
    def fps(self) -> float:
        return 1000.0 / (self.seg_ms + self.batched["total"])


def _time_modes(modes: dict, frame: Frame, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median stage times per mode; the modes alternate run by run so that they share machine load."""
    samples = {name: {k: [] for k in BENCH_STAGES} for name in modes}
    for r in range(warmup + repeats):
        for name, fn in modes.items():
            res = fn(frame)
            if res.error or len(res.instances) == 0:
                raise RuntimeError(f"benchmark frame failed: {res.error or res.skipped}")
            if r >= warmup:
                for k in BENCH_STAGES:
                    samples[name][k].append(res.timings_ms[k])
    return {name: {k: statistics.median(v) for k, v in st.items()} for name, st in samples.items()}


def _time_segmenter(pipe, frame: Frame, repeats: int, warmup: int) -> float:
    """Median ms of the segmentation stage alone (one full-frame pass, argmax, label to the CPU)."""
    times = []
    for r in range(warmup + repeats):
        t0 = time.perf_counter()
        pipe.segment(frame.rgb)
        if r >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _bench_one(device: str, fp16: bool, backbone: str, counts, args) -> list[_Row]:
    from densefusion_ros.pipeline import Pipeline, PipelineConfig

    num_objects = max(counts)
    nets = random_networks(num_objects, backbone=backbone, segmenter=True)
    est, ref, seg = nets["estimator"], nets["refiner"], nets["segmenter"]
    seg.metadata = CheckpointMeta(kind="segmenter", input_scale=args.seg_scale)  # as the bundled segmenter (trained at --seg-scale 0.5)
    config = PipelineConfig(
        num_points=args.num_points, refine_iterations=args.iterations, seed=0, device=device, fp16=fp16,
        min_points=1, min_mask_pixels=1, icp="none",
    )  # fmt: skip
    pipe = Pipeline(est, synthetic_catalog(num_objects), config, refiner=ref, segmenter=seg)
    plain = Pipeline(
        est, pipe.catalog, replace(config, fast_head=False, cpu_point_rows=False, fuse_batchnorm=False, cuda_graphs=False), refiner=ref
    )
    modes = {"batched": pipe, "plain": plain, "loop": pipe.run_per_object}
    if device.startswith("cuda"):
        modes["eager"] = Pipeline(est, pipe.catalog, replace(config, cuda_graphs=False), refiner=ref)
    rows = []
    for n in counts:
        frame = synthetic_frame(n, height=args.height, width=args.width, seed=args.seed + n)
        t = _time_modes(modes, frame, args.repeats, args.warmup)
        seg_ms = _time_segmenter(pipe, frame, args.repeats, args.warmup)
        rows.append(
            _Row(device, "fp16" if fp16 else "fp32", backbone, n, t["batched"], t["loop"], t["plain"], seg_ms, t.get("eager"))
        )
        if args.verbose:
            print(_format_row(rows[-1]), flush=True)
    return rows


def _format_header() -> str:
    head = f"{'device':<6} {'prec':<4} {'backbone':<12} {'obj':>3} |"
    for k in ("estimator", "refiner", "total"):
        head += f" {k + ' b/l ms':>19} {'x':>5} |"
    return head + f" {'plain ms':>9} {'x':>5} | {'seg ms':>7} {'fps':>6} | {'eager ms':>8} {'x':>5}"


def _format_row(r: _Row) -> str:
    line = f"{r.device:<6} {r.precision:<4} {r.backbone:<12} {r.objects:>3} |"
    for k in ("estimator", "refiner", "total"):
        b, l = r.batched[k], r.loop[k]
        line += f" {b:>9.1f}/{l:<9.1f} {l / b if b > 0 else float('nan'):>5.2f} |"
    p = r.plain["total"]
    line += f" {p:>9.1f} {r.loop['total'] / p if p > 0 else float('nan'):>5.2f} | {r.seg_ms:>7.1f} {r.fps:>6.1f} |"
    if not r.eager:
        return line + f" {'-':>8} {'-':>5}"
    e = r.eager["total"]
    return line + f" {e:>8.1f} {r.loop['total'] / e if e > 0 else float('nan'):>5.2f}"


def _bench_layouts(counts, args) -> None:
    """Network calls alone, published layout versus the batched path's CPU forms, interleaved
    call by call: ``forward_best`` on channels-first ``[B,C,N]`` vs point rows ``[B*N,C]``, the
    refiner likewise, and the compact colour net's full-size map + gather vs ``forward_at``."""
    nets = random_networks(max(counts))
    est, ref = nets["estimator"], nets["refiner"]
    print(f"{'call':<28} {'B':>3} | {'published ms':>12} {'fast ms':>8} {'x':>5}")
    for b in counts:
        points, emb = torch.randn(b, args.num_points, 3) * 0.05, torch.randn(b, 32, args.num_points)
        obj = torch.arange(b) % max(counts)
        img = torch.randn(b, 3, 120, 120)
        choose = torch.stack([torch.randperm(120 * 120)[: args.num_points] for _ in range(b)])

        def full_map():
            out = est.cnn(img).reshape(b, 32, -1)
            return out.gather(2, choose.unsqueeze(1).expand(-1, 32, -1))

        pairs = {
            "estimator forward_best": (lambda: est.forward_best(points, emb, obj), lambda: est.forward_best(points, emb, obj, rows=True)),
            "refiner": (lambda: ref(points, emb, obj), lambda: ref(points, emb, obj, rows=True)),
            "colour net 120x120 + gather": (full_map, lambda: est.embed(img, choose)),
        }
        for name, calls in pairs.items():
            times = [[], []]
            with torch.inference_mode():
                for r in range(args.warmup + args.repeats):
                    for k, call in enumerate(calls):
                        t0 = time.perf_counter()
                        call()
                        if r >= args.warmup:
                            times[k].append((time.perf_counter() - t0) * 1e3)
            slow, fast = (statistics.median(t) for t in times)
            print(f"{name:<28} {b:>3} | {slow:>12.2f} {fast:>8.2f} {slow / fast:>5.2f}", flush=True)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", default="1,2,4,8", help="comma-separated object counts per frame")
    parser.add_argument("--backbones", default="psp_resnet18,compact", help="color backbones to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per mode first")
    parser.add_argument("--num-points", type=int, default=1000, help="points per instance (published YCB 1000)")
    parser.add_argument("--iterations", type=int, default=2, help="refiner iterations (published 2)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--devices", default="auto", help="'auto' (cpu + cuda if present), or e.g. 'cpu'")
    parser.add_argument("--no-fp16", action="store_true", help="skip the CUDA fp16 runs")
    parser.add_argument("--seg-scale", type=float, default=0.5, help="segmenter input scale (bundled: 0.5)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print rows as they finish")
    parser.add_argument("--layouts", action="store_true", help="time the network calls alone (CPU): published layout vs the batched path's forms")


def run(args: argparse.Namespace) -> int:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    counts = [int(c) for c in str(args.objects).split(",") if c.strip()]
    backbones = [b.strip() for b in str(args.backbones).split(",") if b.strip()]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")
    print(
        f"# densefusion_ros bench: torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"N={args.num_points}, K={args.iterations}, {args.height}x{args.width}, repeats={args.repeats} (median), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if args.layouts:
        _bench_layouts(counts, args)
        return 0
    if torch.cuda.is_available():
        print(f"# cuda: {torch.cuda.get_device_name(0)}")
    print("# b = batched pipeline, l = published per-object loop, x = l / b (higher = batched faster);")
    print("# plain = batching only (fast_head=False, cpu_point_rows=False, fuse_batchnorm=False, cuda_graphs=False): total ms and l / plain")
    print("# seg ms = the compact segmenter alone; fps = 1000 / (seg ms + batched total): end to end")
    print("# eager = CUDA only: the batched pipeline without CUDA graphs (cuda_graphs=False): total ms and l / eager")
    print(_format_header(), flush=True)
    start = time.perf_counter()
    for device in devices:
        precisions = [False] + ([True] if device.startswith("cuda") and not args.no_fp16 else [])
        for fp16 in precisions:
            for backbone in backbones:
                for row in _bench_one(device, fp16, backbone, counts, args):
                    if not args.verbose:
                        print(_format_row(row), flush=True)
    print(f"# {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_pipeline", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
