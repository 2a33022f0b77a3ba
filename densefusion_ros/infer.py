"""``densefusion-ros infer``: estimate the poses in one RGB-D frame, write ``poses.json`` and ``overlay.png``.

Inputs, one of:

* ``--rgb RGB.png --depth DEPTH.png`` with ``--K fx,fy,cx,cy`` or ``--camera-json`` (a BOP
  ``scene_camera.json`` entry ``{"cam_K": [9], "depth_scale": mm per unit}``, or the whole file
  with ``--frame ID``); ``--depth-scale`` is metres per raw depth unit (default: the camera
  JSON's ``depth_scale / 1000``, else 0.001 = millimetres);
* ``--bop-scene ROOT/SPLIT/SCENE --frame ID`` (add ``--gt-masks`` to use the visible GT masks
  instead of the segmenter).

Networks: ``--weights`` (estimator), ``--refiner``, ``--segmenter``; without ``--weights`` the
bundled demo networks in the package's ``models/`` folder and ``config/objects/demo.yaml`` are
used when present. Masks can come from ``--label LABEL.png`` (class id per pixel) or
``--masks CLASS_ID=MASK.png ...`` instead of the segmenter.

``poses.json`` conventions: ``R`` row-major object -> camera (OpenCV optical frame), ``t`` in
metres, ``quaternion_wxyz`` w-first (DenseFusion), ``quaternion_xyzw`` w-last (ROS), ``box``
the half-open crop box in pixels.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from densefusion_ros.choices import ICP_MODES, INSTANCE_RULES
from densefusion_ros.frame import Frame, depth_to_metres

if TYPE_CHECKING:
    from densefusion_ros.pipeline import FrameResult

__all__ = ["configure_parser", "run", "load_input_frame", "default_paths", "result_to_json"]

log = logging.getLogger(__name__)

BUNDLED = {
    "weights": ("models", "estimator.pth"),
    "refiner": ("models", "refiner.pth"),
    "segmenter": ("models", "segmenter.pth"),
    "catalog": ("config", "objects", "demo.yaml"),
}


def default_paths() -> dict[str, Path | None]:
    """The bundled demo files that exist (``None`` for those that do not)."""
    from densefusion_ros.resources import share_path

    out: dict[str, Path | None] = {}
    for key, parts in BUNDLED.items():
        path = share_path(*parts)
        out[key] = path if path.is_file() else None
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``infer``'s arguments (module docstring) to ``parser``."""
    src = parser.add_argument_group("input frame")
    src.add_argument("--rgb", type=Path, help="RGB image (PNG/JPEG)")
    src.add_argument("--depth", type=Path, help="depth image (uint16 PNG, or float32 metres in .npy)")
    src.add_argument("--depth-scale", type=float, default=None, help="metres per raw depth unit (default 0.001, mm)")
    src.add_argument("--K", dest="K", help="intrinsics 'fx,fy,cx,cy' (pixels)")
    src.add_argument("--camera-json", type=Path, help="BOP scene_camera.json entry (or whole file, with --frame)")
    src.add_argument("--bop-scene", type=Path, help="BOP scene folder ROOT/SPLIT/SCENE_ID")
    src.add_argument("--frame", type=int, help="image id in --bop-scene or --camera-json")
    src.add_argument("--gt-masks", action="store_true", help="with --bop-scene: use the visible GT masks")
    src.add_argument("--label", type=Path, help="label image, class id per pixel (skips the segmenter)")
    src.add_argument("--masks", nargs="+", metavar="CLASS_ID=PNG", help="per-class masks (skip the segmenter)")
    net = parser.add_argument_group("networks")
    net.add_argument("--weights", type=Path, help="estimator checkpoint (default: bundled models/estimator.pth)")
    net.add_argument("--refiner", type=Path, help="refiner checkpoint (default with bundled weights: models/refiner.pth)")
    net.add_argument("--segmenter", type=Path, help="segmenter checkpoint (default with bundled weights: models/segmenter.pth)")
    net.add_argument("--no-refiner", action="store_true", help="do not refine (the per-pixel DenseFusion result)")
    net.add_argument("--catalog", type=Path, help="object catalog YAML (default: config/objects/demo.yaml)")
    opt = parser.add_argument_group("pipeline")
    opt.add_argument("--iterations", type=int, default=2, help="refiner iterations K (published: 2 YCB, 4 LineMOD)")
    opt.add_argument("--icp", choices=ICP_MODES, default="verify",
                     help="ICP stage (verify: the turns of the network pose checked against the depth)")
    opt.add_argument("--num-points", type=int, default=None, help="points per instance (default: from the checkpoint)")
    opt.add_argument(
        "--instances", choices=INSTANCE_RULES, default="best",
        help="mask -> instances rule (PipelineConfig.instances): best = of a class's components, the one its pose explains best",
    )  # fmt: skip
    opt.add_argument("--score-threshold", type=float, default=0.0)
    opt.add_argument("--min-mask-pixels", type=int, default=50)
    opt.add_argument("--seed", type=int, default=0, help="point sampling seed (-1: random)")
    opt.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    opt.add_argument("--fp16", action="store_true", help="float16 autocast on CUDA")
    parser.add_argument("--out", type=Path, default=Path("out/infer"), help="output folder")


# ----------------------------------------------------------------------------------------------
# inputs


def _parse_K(text: str) -> np.ndarray:
    values = [float(v) for v in text.replace(" ", "").split(",") if v]
    if len(values) == 9:
        return np.asarray(values, np.float64).reshape(3, 3)
    if len(values) != 4:
        raise ValueError(f"--K needs 'fx,fy,cx,cy' (or 9 values), got {text!r}")
    fx, fy, cx, cy = values
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def _camera_entry(path: Path, frame_id: int | None) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if "cam_K" in data:
        return data
    if frame_id is None:
        if len(data) != 1:
            raise ValueError(f"{path} holds {len(data)} camera entries: pick one with --frame")
        return next(iter(data.values()))
    if str(frame_id) not in data:
        raise ValueError(f"{path} has no entry for frame {frame_id}")
    return data[str(frame_id)]


def _read_depth(path: Path, scale: float) -> np.ndarray:
    from densefusion_ros.data import io

    raw = np.load(path) if path.suffix == ".npy" else io.read_raw(path)
    if raw.ndim == 3:
        raw = raw[..., 0]
    return depth_to_metres(raw, None if np.issubdtype(raw.dtype, np.floating) else scale)


def load_input_frame(args: argparse.Namespace) -> tuple[Frame, dict[str, Any]]:
    """The :class:`Frame` described by the command line and a description of its source."""
    from densefusion_ros.data import io

    if args.bop_scene is not None:
        from densefusion_ros.data.bop import BopDataset

        if args.frame is None:
            raise ValueError("--bop-scene needs --frame ID")
        scene = args.bop_scene.resolve()
        ds = BopDataset(scene.parent.parent, scene.parent.name, scene_ids=[int(scene.name)], with_label=args.gt_masks)
        frame = ds.load_frame(int(scene.name), int(args.frame))
        source = {"bop_scene": str(scene), "frame": int(args.frame)}
    else:
        if args.rgb is None or args.depth is None:
            raise ValueError("give --rgb and --depth (with --K or --camera-json), or --bop-scene and --frame")
        cam = _camera_entry(args.camera_json, args.frame) if args.camera_json else None
        if args.K:
            K = _parse_K(args.K)
        elif cam is not None:
            K = np.asarray(cam["cam_K"], np.float64).reshape(3, 3)
        else:
            raise ValueError("give the intrinsics with --K fx,fy,cx,cy or --camera-json")
        scale = args.depth_scale
        if scale is None:
            scale = float(cam["depth_scale"]) / 1000.0 if cam is not None and "depth_scale" in cam else 0.001
        rgb = io.read_rgb(args.rgb)
        frame = Frame(rgb=rgb, depth_m=_read_depth(args.depth, scale), K=K)
        source = {"rgb": str(args.rgb), "depth": str(args.depth), "depth_scale_m": scale}
    if args.label is not None:
        frame.label = io.read_raw(args.label)
        if frame.label.ndim == 3:
            frame.label = frame.label[..., 0]
        source["label"] = str(args.label)
    if args.masks:
        masks = {}
        for spec in args.masks:
            cid, _, path = spec.partition("=")
            if not path:
                raise ValueError(f"--masks entries are CLASS_ID=PNG, got {spec!r}")
            masks[int(cid)] = io.read_mask(path)
        frame.masks = masks
        source["masks"] = {str(k): v for k, v in (s.split("=", 1) for s in args.masks)}
    return frame, source


# ----------------------------------------------------------------------------------------------
# outputs


def result_to_json(result: FrameResult, K: np.ndarray, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready dict of a :class:`~densefusion_ros.pipeline.FrameResult` of a frame with intrinsics ``K (3, 3)``."""
    instances = []
    for r in result.instances:
        rmin, rmax, cmin, cmax = r.box
        instances.append(
            {
                "name": r.name,
                "class_id": r.class_id,
                "index": r.index,
                "instance": r.instance,
                "R": np.round(r.R, 9).tolist(),
                "t": np.round(r.t, 9).tolist(),
                "quaternion_wxyz": np.round(r.quaternion_wxyz, 9).tolist(),
                "quaternion_xyzw": np.round(r.quaternion_xyzw, 9).tolist(),
                "confidence": round(float(r.confidence), 6),
                "box": {"rmin": rmin, "rmax": rmax, "cmin": cmin, "cmax": cmax},
                "num_points": r.num_points,
                "icp_fitness": r.icp_fitness,
                "icp_rmse_m": r.icp_rmse,
            }
        )
    return {
        "conventions": {
            "R": "3x3 row-major rotation, object -> camera (OpenCV optical frame: x right, y down, z forward)",
            "t": "metres, camera optical frame",
            "quaternion_wxyz": "[w, x, y, z], w first (DenseFusion / networks)",
            "quaternion_xyzw": "[x, y, z, w], w last (ROS geometry_msgs, scipy)",
            "box": "half-open crop box in pixels: rows [rmin, rmax), cols [cmin, cmax)",
        },
        "source": source or {},
        "K": np.asarray(K, np.float64).tolist(),
        "instances": instances,
        "skipped": [{"class_id": int(c), "reason": reason} for c, reason in result.skipped],
        "error": result.error,
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings_ms.items()},
    }


# ----------------------------------------------------------------------------------------------


def _network_paths(args: argparse.Namespace) -> dict[str, Path | None]:
    bundled = default_paths()
    paths = {"weights": args.weights, "refiner": args.refiner, "segmenter": args.segmenter, "catalog": args.catalog}
    if args.weights is None:  # bundled networks only as a set, next to the bundled estimator
        for key in ("weights", "refiner", "segmenter"):
            if paths[key] is None:
                paths[key] = bundled[key]
    if paths["catalog"] is None:
        paths["catalog"] = bundled["catalog"]
    if args.no_refiner:
        paths["refiner"] = None
    return paths


def run(args: argparse.Namespace) -> int:
    """``densefusion-ros infer``: estimate, write ``poses.json`` and ``overlay.png``. Exit status: 0 = done,
    1 = the frame was skipped (``FrameResult.error``), 2 = bad arguments or inputs."""
    from densefusion_ros.catalog import Catalog
    from densefusion_ros.data import io
    from densefusion_ros.overlay import draw_overlay
    from densefusion_ros.pipeline import Pipeline, PipelineConfig

    paths = _network_paths(args)
    if paths["weights"] is None and args.icp != "only":
        print("infer: no estimator weights: give --weights (the bundled models/estimator.pth is absent)", file=sys.stderr)
        return 2
    if paths["catalog"] is None:
        print("infer: no catalog: give --catalog (the bundled config/objects/demo.yaml is absent)", file=sys.stderr)
        return 2
    try:
        frame, source = load_input_frame(args)
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        print(f"infer: {e}", file=sys.stderr)
        return 2
    if frame.masks is None and frame.label is None and paths["segmenter"] is None:
        print("infer: no masks: give --segmenter, --label, --masks or --gt-masks", file=sys.stderr)
        return 2
    use_segmenter = frame.masks is None and frame.label is None
    config = PipelineConfig(
        num_points=args.num_points,
        refine_iterations=args.iterations,
        min_mask_pixels=args.min_mask_pixels,
        score_threshold=args.score_threshold,
        seed=None if args.seed is not None and args.seed < 0 else args.seed,
        device=args.device,
        fp16=args.fp16,
        icp=args.icp,
        instances=args.instances,
    )
    try:
        pipeline = Pipeline.from_checkpoints(
            paths["weights"],
            Catalog.load(paths["catalog"]),
            config,
            refiner=paths["refiner"],
            segmenter=paths["segmenter"] if use_segmenter else None,
        )
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:  # CheckpointError is a ValueError
        print(f"infer: {e}", file=sys.stderr)
        return 2
    result = pipeline(frame)
    source["networks"] = {k: (str(v) if v else None) for k, v in paths.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poses.json").write_text(json.dumps(result_to_json(result, frame.K, source), indent=2) + "\n")
    io.write_rgb(args.out / "overlay.png", draw_overlay(frame.rgb, frame.K, result.instances, pipeline.catalog))
    for r in result.instances:
        q = ", ".join(f"{v:+.3f}" for v in r.quaternion_wxyz)
        print(f"{r.name:<16} t = [{', '.join(f'{v:+.4f}' for v in r.t)}] m  q_wxyz = [{q}]  conf {r.confidence:.3f}")
    for cid, reason in result.skipped:
        print(f"skipped class {cid}: {reason}")
    if result.error:
        print(f"frame skipped: {result.error}", file=sys.stderr)
    times = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    print(f"timings (ms): {times}")
    print(f"wrote {args.out / 'poses.json'} and {args.out / 'overlay.png'}")
    return 0 if result.error is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="densefusion-ros infer", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
