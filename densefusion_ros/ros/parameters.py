"""The node's parameters, in one table: :data:`PARAMETERS`.

Each :class:`Spec` holds a parameter's name, default (which fixes its type), description,
read-only flag, range or choices, and the :class:`~densefusion_ros.pipeline.PipelineConfig` field
it sets. The table drives

* the declaration: :func:`descriptor` puts the range or the choices into the descriptor that
  ``ros2 param describe`` and rqt show, and rclpy refuses values outside a range itself;
* validation at start-up and on every change: :func:`why_invalid`;
* the pipeline's configuration: :func:`pipeline_config` at configure, :func:`apply` on a change;
* ``config/densefusion.yaml`` and the README's parameter table, both written by
  ``python -m tools.render_parameters`` and kept equal to this table by ``test/test_parameters.py``.

The defaults are the shipped configuration: those with a pipeline field equal the core's own
defaults (``PipelineConfig()``, ``IcpOptions()``), which the tests check too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from densefusion_ros.choices import ICP_MODES, INSTANCE_RULES
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

__all__ = ["PARAMETERS", "SPECS", "Spec", "apply", "descriptor", "pipeline_config", "why_invalid"]

Value = bool | int | float | str
INF = float("inf")


def _zero_is_none(value: int) -> int | None:
    return value or None


def _negative_is_none(value: int) -> int | None:
    return None if value < 0 else value


@dataclass(frozen=True)
class Spec:
    """One parameter.

    Attributes:
        name: the parameter's name.
        default: its default; its Python type is the parameter's type.
        description: what it does, as ``ros2 param describe`` shows it.
        group: the heading it is listed under in the README's table.
        read_only: set at start-up only (a change needs a restart).
        range: ``(lowest, highest)`` of a number, inclusive.
        choices: the values a string may take.
        field: the :class:`~densefusion_ros.pipeline.PipelineConfig` attribute it sets, dotted for
            a nested one (``icp_options.init_rotations``); None when the node reads it itself.
        to_field: the field's value from the parameter's (``0`` -> None, say); None = the same.
        launch_argument: also an argument of the launch files (a file path).
    """

    name: str
    default: Value
    description: str
    group: str
    read_only: bool = True
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    field: str | None = None
    to_field: Callable[[Any], Any] | None = None
    launch_argument: bool = False

    def field_value(self, value: Value) -> Any:
        """The pipeline field's value for parameter value ``value``."""
        return value if self.to_field is None else self.to_field(value)


_NETWORKS, _ESTIMATION, _INPUTS, _OUTPUTS, _RUNTIME = "networks and device", "estimation", "inputs", "outputs", "runtime"

PARAMETERS: tuple[Spec, ...] = (
    Spec("estimator_weights", "", "estimator checkpoint (published pose_model_*.pth or own format); '' = bundled models/estimator.pth",
         _NETWORKS, launch_argument=True),
    Spec("refiner_weights", "", "refiner checkpoint; '' = bundled models/refiner.pth if present; 'none' = no refiner",
         _NETWORKS, launch_argument=True),
    Spec("segmenter_weights", "", "segmentation checkpoint; '' = bundled models/segmenter.pth; unused when label_topic is set",
         _NETWORKS, launch_argument=True),
    Spec("catalog", "", "object catalog YAML; '' = bundled config/objects/demo.yaml", _NETWORKS, launch_argument=True),
    Spec("device", "auto", "auto, cpu or cuda:N", _NETWORKS),
    Spec("device_strict", False, "fail at start-up instead of falling back to the CPU when the requested CUDA device is absent", _NETWORKS),
    Spec("fp16", False, "float16 autocast on CUDA", _NETWORKS, field="fp16"),
    Spec("cuda_graphs", True, "on CUDA, replay the networks through CUDA graphs captured once per input shape", _NETWORKS,
         field="cuda_graphs"),
    Spec("torch_threads", 0, "CPU threads for torch; 0 = torch's default (all cores)", _NETWORKS, range=(0, 1024)),
    Spec("num_points", 0, "points sampled per object; 0 = the estimator checkpoint's value", _ESTIMATION, range=(0, 100000),
         field="num_points", to_field=_zero_is_none),
    Spec("mode", "track", "track (follow objects from frame to frame: a new object is acquired with the per-frame path, then "
         "followed by a short ICP each frame; ids <name>_<track_id> stay while it is followed) or detect (every frame estimated "
         "on its own; ids <name>_<k>)", _ESTIMATION, read_only=False, choices=("track", "detect")),
    Spec("refine_iterations", 2, "refiner iterations K (the paper uses 2)", _ESTIMATION, read_only=False, range=(0, 20),
         field="refine_iterations"),
    Spec("min_mask_pixels", 50, "smaller masks are skipped", _ESTIMATION, read_only=False, range=(1, INF), field="min_mask_pixels"),
    Spec("min_points", 20, "fewer valid depth points in a mask skip the object", _ESTIMATION, read_only=False, range=(1, INF),
         field="min_points"),
    Spec("icp", "verify", "pose refinement on the observed points (detect mode and track acquisitions): verify (the turns of the "
         "network pose checked against the depth image, batched on the device), after (ICP from the network pose), only (ICP "
         "from the centroid, no networks) or none (the network pose, as published)", _ESTIMATION,
         choices=ICP_MODES, field="icp"),
    Spec("verify_hypotheses", 60, "icp verify: turns of the network pose tried, nearest first (60 = the icosahedral group; "
         "fewer cost less ICP time and find fewer flipped poses: docs/performance.md compares them)", _ESTIMATION,
         read_only=False, range=(1, 60), field="icp_options.init_rotations"),
    Spec("verify_centroid_starts", True, "icp verify: also start the turns where the observed points put the object's centre, "
         "when that is far from the network's (occluded objects; up to twice the ICP time)", _ESTIMATION, read_only=False,
         field="icp_options.verify_centroid_starts"),
    Spec("verify_max_violation", 0.2, "icp verify: a verified pose with a larger share of its model points in front of the "
         "measured depth or below the table is not published (1 = publish any)", _ESTIMATION, read_only=False, range=(0.0, 1.0),
         field="icp_options.verify_max_violation"),
    Spec("verify_max_seen_violation", 0.35, "icp verify (torch backend): a verified pose with a larger share of the model points "
         "that the camera would see (its front surface) in front of the measured depth is not published: a distractor of its "
         "colour taken for it shows little of the model, and that in front (1 = publish any)", _ESTIMATION, read_only=False, range=(0.0, 1.0),
         field="icp_options.verify_max_seen_violation"),
    Spec("min_in_view", 0.1, "icp verify: a verified pose with less than this share of its model inside the image is not published (a "
         "sliver at the border fits any surface of its colour), and track mode neither re-checks nor recovers a track predicted "
         "that far out; higher: fewer wrong poses at the border, and fewer poses there", _ESTIMATION, read_only=False,
         range=(0.0, 1.0), field="icp_options.verify_min_in_view"),
    Spec("instances", "best", "mask -> objects: best (of a class's mask components, the one whose pose best explains the depth "
         "image; one object per class), largest (its largest component), class (the whole mask, as published) or split "
         "(every component an object)", _ESTIMATION, choices=INSTANCE_RULES, field="instances"),
    Spec("score_threshold", 0.0, "objects whose confidence is lower are not published", _ESTIMATION, read_only=False,
         range=(0.0, 1.0), field="score_threshold"),
    Spec("seed", -1, "seed for point sampling; negative = random", _ESTIMATION, range=(-(2**31), 2**31 - 1), field="seed",
         to_field=_negative_is_none),
    Spec("color_topic", COLOR_TOPIC, "colour image topic (rgb8, bgr8, rgba8, bgra8)", _INPUTS),
    Spec("depth_topic", DEPTH_TOPIC, "depth aligned to colour (16UC1 mm or 32FC1 m)", _INPUTS),
    Spec("camera_info_topic", CAMERA_INFO_TOPIC, "camera_info of the colour image (K is read from it)", _INPUTS),
    Spec("label_topic", "", "optional label image topic (mono8/16UC1 class ids) used instead of the segmentation net", _INPUTS),
    Spec("raw_inputs", True, "receive the inputs serialized and decode them with rosbags (numpy views of the pixels, a fraction "
         "of rclpy's work per message); in-package sync only: with message_filters installed, rclpy decodes", _INPUTS),
    Spec("qos", "sensor_data", "input QoS: sensor_data (best effort) or reliable", _INPUTS, choices=("sensor_data", "reliable")),
    Spec("sync_slop", 0.05, "ApproximateTime slop between colour, depth and camera_info stamps, seconds", _INPUTS, range=(0.0, INF)),
    Spec("sync_queue_size", 5, "ApproximateTime queue per input", _INPUTS, range=(1, 10000)),
    Spec("max_input_age", 1.0, "frames older than this (seconds, stamp vs. now) are dropped; 0 = never", _INPUTS, read_only=False,
         range=(0.0, INF)),
    Spec("max_depth", 15.0, "median valid depth above this many metres means wrong units: the frame is dropped", _INPUTS,
         read_only=False, range=(1e-3, INF)),
    Spec("max_pixels", 4096 * 4096, "larger images are dropped", _INPUTS, read_only=False, range=(1, INF)),
    Spec("target_frame", "", "frame of the published poses, detections, markers and TF (e.g. base_link), looked up in TF at the "
         "image stamp; a frame without that transform is dropped; '' = the camera's optical frame", _OUTPUTS),
    Spec("publish_tf", True, "broadcast <tf_prefix><object>_<id> frames (id: track id, or instance number in detect mode) as "
         "children of the camera frame (of target_frame when set)", _OUTPUTS, read_only=False),
    Spec("tf_prefix", "", "prefix of the TF child frames; '' = the node's namespace and a slash (robot1/duck_0), none at the root",
         _OUTPUTS, read_only=False),
    Spec("publish_markers", True, "publish mesh markers on ~/markers", _OUTPUTS, read_only=False),
    Spec("overlay", True, "publish ~/overlay (computed only while someone subscribes)", _OUTPUTS, read_only=False),
    Spec("continuous", True, "estimate every frame; false = only after a ~/trigger call", _OUTPUTS, read_only=False),
    Spec("trigger_timeout", 5.0, "seconds a ~/trigger call waits for the next processed frame", _OUTPUTS, read_only=False,
         range=(1e-3, INF)),
    Spec("autostart", True, "configure and activate at start-up (a plain ros2 run); false: wait for the lifecycle's configure "
         "and activate (a lifecycle manager)", _RUNTIME),
    Spec("executor", "events", "rclpy executor: events (rclpy's EventsExecutor, the least work per message) or multi_threaded",
         _RUNTIME, choices=("events", "multi_threaded")),
    Spec("diagnostics_period", 1.0, "seconds between /diagnostics messages", _RUNTIME, range=(1e-3, INF)),
    Spec("expected_input_hz", 30.0, "camera rate (Hz): the input frequency diagnostics expect it (tolerance 10 %), and track mode's "
         "motion model counts the camera frames between processed frames by it (and re-checks turns only while the node keeps up "
         "with it: set it to the camera's rate)", _RUNTIME,
         read_only=False, range=(1e-3, INF)),
    Spec("processing_budget_ms", 200.0, "per-frame processing budget: WARN above it, ERROR after 10 frames in a row", _RUNTIME,
         read_only=False, range=(1e-3, INF)),
    Spec("log_throttle", 5.0, "seconds between repeats of the same warning", _RUNTIME, read_only=False, range=(0.0, INF)),
)

SPECS: dict[str, Spec] = {spec.name: spec for spec in PARAMETERS}
""":data:`PARAMETERS` by name."""


def why_invalid(name: str, value: Value) -> str | None:
    """Why ``value`` cannot be parameter ``name``'s (outside its choices or range), or None."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name}: '{value}' is not {', '.join(spec.choices[:-1])} or {spec.choices[-1]}"
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        return f"{name}: {value} is outside [{spec.range[0]}, {spec.range[1]}]"
    return None


def descriptor(spec: Spec) -> Any:
    """The ``rcl_interfaces/ParameterDescriptor`` of ``spec``: description, read-only flag, and its
    range (an integer or floating-point range, by the default's type) or its choices."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    result = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            top = int(high) if math.isfinite(high) else 2**63 - 1
            result.integer_range = [IntegerRange(from_value=int(low), to_value=top, step=0)]
        else:
            result.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    if spec.choices:
        result.additional_constraints = "one of: " + ", ".join(spec.choices)
    return result


def pipeline_config(values: Mapping[str, Value] | Callable[[str], Value], **overrides: Any) -> Any:
    """The :class:`~densefusion_ros.pipeline.PipelineConfig` that parameter ``values`` (a mapping,
    or a getter such as the node's) make; parameters left out keep their defaults. ``overrides``
    set fields directly (``device``, resolved by the node)."""
    from densefusion_ros.icp import IcpOptions
    from densefusion_ros.pipeline import PipelineConfig

    get = values if callable(values) else (lambda name: values.get(name, SPECS[name].default))
    fields: dict[str, Any] = {}
    icp_options: dict[str, Any] = {}
    for spec in PARAMETERS:
        if spec.field is None:
            continue
        value = spec.field_value(get(spec.name))
        if spec.field.startswith("icp_options."):
            icp_options[spec.field.partition(".")[2]] = value
        else:
            fields[spec.field] = value
    return PipelineConfig(**fields, icp_options=IcpOptions(**icp_options), **overrides)


def apply(config: Any, name: str, value: Value) -> bool:
    """Set the pipeline field of parameter ``name`` on ``config`` in place (a live change, used
    from the next frame); False when the parameter has no field."""
    spec = SPECS.get(name)
    if spec is None or spec.field is None:
        return False
    owner, _, attribute = spec.field.rpartition(".")
    target = getattr(config, owner) if owner else config
    setattr(target, attribute, spec.field_value(value))
    return True

