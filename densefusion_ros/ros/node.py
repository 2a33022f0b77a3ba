"""``densefusion_node``: synchronised RGB-D in; TF, PoseArray, Detection3DArray, markers, overlay out.

The node only converts messages, schedules work and publishes; the ROS-free
:class:`~densefusion_ros.pipeline.Pipeline` does the estimation. In ``mode: track`` (the default)
a :class:`~densefusion_ros.tracking.Tracker` around it follows objects from frame to frame, so
ids and TF frames (``<name>_<track_id>``) stay the same while an object is followed and a lost
object's pose is simply not published; ``~/reset_tracks`` forgets every track. ``mode: detect``
estimates every frame on its own (``<name>_<k>``). Inference runs on one worker
thread fed by a one-slot "latest frame wins" handoff, so queues never build up: a frame that
arrives while the worker is busy replaces the waiting one (counted as dropped), and frames older
than ``max_input_age`` are dropped. Ages are measured on the node's clock (``/clock`` with
``use_sim_time``); a recording replayed without ``/clock`` is recognised by its steady lag and
accepted, and stamps that jump back (a loop) restart the checks and the tracks. Every processed frame yields exactly one message on
``~/poses`` and ``~/detections`` (empty when nothing is found), stamped with the colour image's
stamp and frame, so a consumer can tell "nothing there" from "node stalled".

The node is a lifecycle node (configure loads the networks, activate subscribes, deactivate and
cleanup release them); ``autostart`` runs configure and activate at start-up.

Inputs arrive serialized and are decoded by the ``rosbags`` CDR reader (``raw_inputs``; see
:mod:`~densefusion_ros.ros.compat`): a fraction of rclpy's work per message on the executor thread,
which on a small CPU shares the GIL with the worker.

Bad input never reaches the worker or an output: each set is checked on arrival (stamps, and
:func:`~densefusion_ros.ros.inputs.check_set` on the headers) and again when decoded
(:func:`~densefusion_ros.ros.inputs.decode_set`); a dropped set is counted per reason in
/diagnostics and logged once per ``log_throttle`` seconds per reason. Only finite poses with a
proper rotation are published, with unit quaternions. Start-up errors, devices and signals are
handled in :mod:`densefusion_ros.ros.process`.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import defaultdict, deque
from typing import Any, NoReturn

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from densefusion_ros_interfaces.srv import GetPoses
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float64, Header
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from densefusion_ros.frame import Frame
from densefusion_ros.overlay import draw_overlay
from densefusion_ros.pipeline import FrameResult
from densefusion_ros.ros import compat, outputs, parameters, process
from densefusion_ros.ros.conversions import numpy_to_image
from densefusion_ros.ros.diagnostics import OK, WARN, BudgetStatus, DropLog, FrequencyStatus, SyncStatus, TimestampStatus, tracks_status
from densefusion_ros.ros.inputs import Rejected, check_set, decode_set
from densefusion_ros.ros.sync import header_stamp
from densefusion_ros.tracking import Tracker

INPUTS = ("color", "depth", "camera_info", "label")
BUSY = "busy (latest frame wins)"
JUMP_BACK_S = 1.0
"""Stamps this far (seconds) behind the last accepted frame's restart the sequence checks (a loop of
a recording, a driver's reset); closer ones are dropped as out of order."""


class DenseFusionNode(LifecycleNode):
    """Synchronised RGB-D to 6D poses; see the module docstring.

    A lifecycle node: ``configure`` loads the networks, ``activate`` subscribes to the inputs and
    starts the worker, ``deactivate`` stops them and forgets the tracks, ``cleanup`` drops the
    networks and frees their device memory. With ``autostart`` (the default) the node configures
    and activates itself at start-up, as a plain ``ros2 run`` expects.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("densefusion", **kwargs)
        for spec in parameters.PARAMETERS:
            try:
                self.declare_parameter(spec.name, spec.default, parameters.descriptor(spec))
            except (InvalidParameterTypeException, InvalidParameterValueException) as e:
                raise process.StartupError(f"parameter {spec.name}: {e}") from None
            if (why := parameters.why_invalid(spec.name, self._p(spec.name))) is not None:
                raise process.StartupError(why)
        self.catalog, self.pipeline, self.tracker = None, None, None  # loaded by configure
        self._mode = self._p("mode")
        self._track_lock = threading.Lock()  # held by the worker while it tracks and publishes a frame, and by ~/reset_tracks
        self._reset_pending = False  # the worker forgets every track before its next tracked frame
        self._track_stats: dict | None = None  # the tracker's counts after the last tracked frame or reset
        self._stats = _Stats()
        self._drops = DropLog(self.get_logger().warning, lambda: self._p("log_throttle"))
        self._slot: tuple | None = None
        self._cv = threading.Condition()
        self._stop = False
        self._worker: threading.Thread | None = None
        self._subs: list = []
        self._startup_error: process.StartupError | None = None
        self._lifecycle = "unconfigured"  # for /diagnostics: unconfigured, inactive, active (rclpy keeps its own privately)
        self._last_accepted = -1.0
        self._trigger_armed = False
        self._trigger_done = threading.Event()
        self._trigger_result = ""

        self.pub_poses = self.create_publisher(PoseArray, "~/poses", 10)
        self.pub_detections = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", 2)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_processing_ms = self.create_publisher(Float64, "~/debug/processing_time_ms", 10)
        self.pub_latency_ms = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        self.pub_pipeline_ms = self.create_publisher(Float64, "~/debug/pipeline_time_ms", 10)
        self.tf = compat.TransformPublisher(self)
        self._tf_buffer = compat.transform_buffer(self)  # for target_frame and ~/get_poses
        self._latest: tuple[Header, list] | None = None  # the last published frame's camera-frame header and instances

        self._topics = [(Image, self._p("color_topic")), (Image, self._p("depth_topic")), (CameraInfo, self._p("camera_info_topic"))]
        if self._p("label_topic"):
            self._topics.append((Image, self._p("label_topic")))
        self._input_names = INPUTS[: len(self._topics)]
        self._init_diagnostics([t for _, t in self._topics])
        self._raw_inputs = bool(self._p("raw_inputs")) and not compat.HAVE_MESSAGE_FILTERS
        self._executor_kind = self._p("executor")
        if self._executor_kind == "events" and compat.events_executor() is None:
            self.get_logger().info("this rclpy has no EventsExecutor: spinning a multi-threaded executor instead")
            self._executor_kind = "multi_threaded"
        autostart = self._p("autostart")
        if autostart:  # before any thread starts: a start-up error ends the process with one line
            self.trigger_configure()
            if self._startup_error is not None:
                raise self._startup_error
        self._service_hosts: list[_ServiceHost] = []
        for service, callback in (("trigger", self._on_trigger), ("reset_tracks", self._on_reset_tracks)):
            if self._executor_kind == "events":
                # ~/trigger blocks until the next processed frame, ~/reset_tracks until the frame being tracked is
                # done, and the events executor has one thread: each service gets its own (hidden) node and
                # thread so that inputs keep flowing meanwhile
                self._service_hosts.append(_ServiceHost(self, service, Trigger, callback))
            else:
                self.create_service(Trigger, f"~/{service}", callback, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(GetPoses, "~/get_poses", self._on_get_poses)  # answers at once: no thread of its own
        self.create_timer(self._p("diagnostics_period"), self._publish_diagnostics)
        compat.add_parameter_callbacks(self, self._check_parameters, self._apply_parameters)
        if autostart:
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise process.StartupError("activate failed (see the log above)")
        else:
            self.get_logger().info("unconfigured: waiting for the lifecycle's configure and activate (autostart is false)")

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the networks and catalog and run them once; a failure is logged (and raised with autostart)."""
        try:
            self.catalog, self.pipeline = process.load_pipeline(self._p, self.get_logger())
            self.tracker = Tracker(self.pipeline, camera_hz=self._p("expected_input_hz"))
            self.pipeline.warm_up()
        except Exception as e:  # noqa: BLE001 - rclpy would swallow it unlogged; kept for autostart to raise
            self.catalog, self.pipeline, self.tracker = None, None, None
            known = isinstance(e, (process.StartupError, process.Interrupted))
            self._startup_error = e if known else process.StartupError(f"configure failed: {type(e).__name__}: {e}")
            if not self._p("autostart"):  # with autostart the process ends on it with one FATAL line
                self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self._lifecycle = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs and start the worker."""
        qos = qos_profile_sensor_data if self._p("qos") == "sensor_data" else QoSProfile(depth=5)
        self._subs = compat.synchronize(
            self, self._topics, self._on_synced, qos=qos, queue_size=self._p("sync_queue_size"), slop=self._p("sync_slop"),
            on_message=self._on_input, raw=self._raw_inputs,
        )
        if self._worker is not None:  # a frame from before a deactivate still finishing
            self._worker.join()
        self._stop, self._slot, self._last_accepted = False, None, -1.0
        self._worker = threading.Thread(target=self._work, name="densefusion_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: {len(self.catalog)} objects {self.catalog.names}, mode {self._mode}, device {self.pipeline.device}, "
            f"{self.pipeline.num_points} points, refiner {'on' if self.pipeline.refiner is not None else 'off'}, "
            f"segmentation {'topic ' + self._p('label_topic') if self._p('label_topic') else 'network'}; "
            f"inputs {[t for _, t in self._topics]} ({self._p('qos')}, {'raw' if self._raw_inputs else 'rclpy'} decoding); "
            f"backends {compat.backends()}"
        )
        self._lifecycle = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker (a frame in progress finishes), forget the tracks, free cached device memory."""
        compat.unsubscribe(self, self._subs)
        self._subs = []
        self._stop_worker()
        with self._track_lock:
            self.tracker.reset()
            self._track_stats = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._latest = None
        self.get_logger().info("inactive: inputs unsubscribed, tracks forgotten")
        self._lifecycle = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the networks; their device memory is freed."""
        self.catalog, self.pipeline, self.tracker = None, None, None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.get_logger().info("unconfigured: networks released")
        self._lifecycle = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._subs:
            compat.unsubscribe(self, self._subs)
            self._subs = []
        self._stop_worker()
        self._lifecycle = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self, timeout: float | None = None) -> None:
        """Stop the worker thread, waiting for a frame in progress (at most ``timeout`` s); a worker
        still finishing its frame is kept, so that activate waits for it before starting another."""
        with self._cv:
            self._stop = True
            self._slot = None
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            if not self._worker.is_alive():
                self._worker = None

    # ---------------------------------------------------------------- set-up
    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    @property
    def _tf_prefix(self) -> str:
        """``tf_prefix``, or the namespace with a slash: two cameras' nodes in their own namespaces do not collide."""
        namespace = self.get_namespace().strip("/")
        return self._p("tf_prefix") or (f"{namespace}/" if namespace else "")

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Refuse a change outside the parameter's choices or range (read-only parameters rclpy refuses itself)."""
        for param in params:
            if (why := parameters.why_invalid(param.name, param.value)) is not None:
                return SetParametersResult(successful=False, reason=why)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Apply accepted changes at once: pipeline settings from the next frame, diagnostics limits now."""
        for param in params:
            spec = parameters.SPECS.get(param.name)  # None for rclpy's own (use_sim_time)
            if spec is not None and spec.field is not None:
                if self.pipeline is not None:  # unconfigured: configure reads it
                    parameters.apply(self.pipeline.config, param.name, param.value)
            elif param.name == "expected_input_hz":
                if self.tracker is not None:
                    self.tracker.options.camera_hz = param.value
                for freq in self._input_freq.values():
                    freq.min_hz = freq.max_hz = param.value
                self._output_freq.max_hz = param.value
            elif param.name == "processing_budget_ms":
                self._budget.budget_ms = param.value
            elif param.name == "mode" and param.value != self._mode:
                self._reset_pending = True  # tracking starts again with no tracks
                self._mode = param.value
            self.get_logger().info(f"parameter {param.name} set to {param.value!r}")

    def _init_diagnostics(self, topics: list[str]) -> None:
        hz = self._p("expected_input_hz")
        self._input_freq = {name: FrequencyStatus(hz, hz) for name in self._input_names}
        self._output_freq = FrequencyStatus(0.0, hz)  # any rate up to the camera's is fine
        self._stamps = TimestampStatus(max_future=0.5, max_age=self._p("max_input_age"))
        self._budget = BudgetStatus(self._p("processing_budget_ms"))
        self._sync = SyncStatus(self._input_names, topics, self._p("sync_slop"))

    # ---------------------------------------------------------------- inputs (executor threads)
    def _on_input(self, index: int, msg: Any) -> None:
        self._input_freq[self._input_names[index]].tick()
        self._sync.message(index, header_stamp(msg))

    def _on_synced(self, *msgs: Any) -> None:
        """Check a set (stamps and headers only) and put it in the worker's slot."""
        self._sync.synced()
        try:
            stamp = self._check_stamp(msgs[0])
            check_set(*msgs, max_pixels=self._p("max_pixels"))
        except Rejected as e:
            self._drops.drop(e.reason, e.text)
            return
        except Exception as e:  # noqa: BLE001 - an exception here would end the executor's spin
            self._drops.drop("exception", f"unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}")
            return
        self._last_accepted = stamp
        with self._cv:
            if self._slot is not None:
                self._drops.drop(BUSY, log=False)  # by design; counted in /diagnostics, not logged
            self._slot = msgs
            self._cv.notify()

    def _check_stamp(self, color: Image) -> float:
        now = self.get_clock().now().nanoseconds * 1e-9
        stamp = header_stamp(color)
        self._stamps.max_age = self._p("max_input_age")
        if stamp < self._last_accepted - JUMP_BACK_S:  # a replay's loop or a driver's reset: start over
            self.get_logger().info(f"input stamps jumped back by {self._last_accepted - stamp:.1f} s (a recording's loop, "
                                   "a reset): sequence checks start again and tracks are forgotten")
            self._stamps.restart(stamp, now)
            self._last_accepted = -1.0
            self._reset_pending = True
            self._tf_buffer.clear()  # the loop's transforms come again, older than the kept ones
        problem = self._stamps.check(stamp, now)
        if self._stamps.replay_detected:
            self._stamps.replay_detected = False
            self.get_logger().info(f"input stamps lag the clock by a steady {self._stamps.offset:.3f} s: a recording replayed "
                                   "without /clock? ages are measured from that lag (use_sim_time and --clock avoid it)")
        if problem == "zero":
            raise Rejected("stamp zero", "colour stamp is zero (driver not stamping?)")
        if problem == "future":
            raise Rejected("stamp future", f"colour stamp {stamp:.3f} is {stamp - now:.3f} s ahead of now "
                                           f"(at most {self._stamps.max_future:g} s allowed; clocks out of sync?)")
        if problem == "stale":
            raise Rejected("stamp stale", f"colour stamp {stamp:.3f} is {now - stamp:.3f} s old (max_input_age {self._stamps.max_age:g} s)")
        if stamp <= self._last_accepted:
            raise Rejected("stamp out of order", f"colour stamp {stamp:.3f} is not after the previous frame's {self._last_accepted:.3f}")
        return stamp

    def _on_trigger(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """With ``continuous: false``: process the next frame and answer with what it showed (at most ``trigger_timeout``)."""
        if self._lifecycle != "active":  # no frame can come: answer now instead of after the timeout
            response.message = f"{self._lifecycle}: no frames are processed"
            return response
        self._trigger_done.clear()
        self._trigger_armed = True
        response.success = self._trigger_done.wait(self._p("trigger_timeout")) and not self._stop
        response.message = self._trigger_result if response.success else "no frame processed before trigger_timeout"
        return response

    def _on_reset_tracks(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Forget every track (waits for a frame being tracked to be published); ids start again at 0."""
        response.success = True
        if self._mode != "track":
            response.message = "detect mode: there are no tracks"
            return response
        tracker = self.tracker  # cleanup may drop it meanwhile: this call keeps the one it checked
        if tracker is None:
            response.message = "unconfigured: there are no tracks"
            return response
        with self._track_lock:
            before = tracker.stats()
            self._reset_pending = False
            tracker.reset()
            self._track_stats = tracker.stats()
        response.message = (f"forgot {before['tracks'] + before['lost']} track(s) ({before['tracks']} followed, "
                            f"{before['lost']} lost); ids start again at 0")
        self.get_logger().info(f"~/reset_tracks: {response.message}")
        return response

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._slot is not None or self._stop, timeout=0.5)
                if self._stop:
                    return
                msgs, self._slot = self._slot, None
            if msgs is None:
                continue
            if not self._p("continuous") and not self._trigger_armed:
                self._stats.untriggered += 1
                continue
            self._handle(msgs)

    def _handle(self, msgs: tuple) -> None:
        """Process one set; any failure drops the frame with a reason and the node goes on."""
        try:
            self._process(*msgs)
        except Rejected as e:
            self._drops.drop(e.reason, e.text)
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            self._drops.drop("cuda out of memory", f"CUDA out of memory ({str(e).splitlines()[0][:200]}); cache emptied, going on")
        except Exception as e:  # noqa: BLE001 - one bad frame must never stop the node
            if not self._stop:  # publishing into a node being destroyed is expected at shutdown
                self._drops.drop("exception", f"unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}")

    def _process(self, color: Image, depth: Image, info: CameraInfo, label: Image | None = None) -> None:
        t0 = time.perf_counter()
        frame = decode_set(color, depth, info, label, max_pixels=self._p("max_pixels"), max_depth=self._p("max_depth"))
        if self._mode != "track":
            self._publish_result(t0, color, frame, self.pipeline(frame))
            return
        with self._track_lock:  # until the frame is published: ~/reset_tracks answers after the ids it forgets are out
            if self._reset_pending:  # cleared first: a jump back meanwhile (executor thread) resets the next frame
                self._reset_pending = False
                self.tracker.reset()
            result = self.tracker(frame)
            self._track_stats = self.tracker.stats()
            self._publish_result(t0, color, frame, result)

    def _publish_result(self, t0: float, color: Image, frame: Frame, result: FrameResult) -> None:
        """Publish one processed frame's outputs (stamped with ``color``'s) and its statistics;
        ``t0``: ``time.perf_counter()`` when the frame's processing began."""
        if result.error is not None:
            raise Rejected("pipeline", result.error)
        instances = [i for i in result.instances if valid_pose(i.R, i.t)]
        if len(instances) != len(result.instances):
            self._stats.withheld += len(result.instances) - len(instances)
            self._drops.warn("invalid pose", f"{len(result.instances) - len(instances)} non-finite or improper pose(s) withheld")
        if self._stop:
            return
        stamp = color.header.stamp  # an rclpy Header for the outputs, whichever decoder read the input
        header = Header(stamp=Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec)), frame_id=str(color.header.frame_id))
        self._publish(header, frame, instances, *self._in_target_frame(header, instances))
        processing_ms = (time.perf_counter() - t0) * 1e3
        latency_ms = (self.get_clock().now().nanoseconds * 1e-9 - frame.stamp) * 1e3
        self._output_freq.tick()
        self._budget.record(processing_ms)
        self._stats.processed(result, processing_ms, latency_ms)
        self.pub_processing_ms.publish(Float64(data=processing_ms))
        self.pub_latency_ms.publish(Float64(data=latency_ms))
        self.pub_pipeline_ms.publish(Float64(data=result.timings_ms["total"]))
        if self._trigger_armed:
            self._trigger_armed = False
            self._trigger_result = ", ".join(f"{outputs.instance_id(i)} ({i.confidence:.2f})" for i in instances) or "nothing found"
            self._trigger_done.set()

    def _in_target_frame(self, header: Header, instances: list) -> tuple[Header, list]:
        """The outputs' header and instances in ``target_frame`` (TF at the image stamp), or as they are."""
        target = self._p("target_frame")
        try:
            return self._in_frame(target, header, instances)
        except compat.TransformLookupError as e:
            raise Rejected("no transform to target_frame", str(e)) from None

    def _in_frame(self, target: str, header: Header, instances: list) -> tuple[Header, list]:
        """``header`` and ``instances`` moved into ``target`` (TF at the image stamp); as they are when
        ``target`` is empty or their own frame. Raises :class:`compat.TransformLookupError`."""
        if not target or target == header.frame_id:
            return header, instances
        try:
            R, t = self._tf_buffer.lookup(target, header.frame_id, header.stamp)
        except compat.TransformLookupError as e:
            when = header.stamp.sec + header.stamp.nanosec * 1e-9
            raise compat.TransformLookupError(f"no transform {header.frame_id} -> {target} at {when:.3f}: {e}") from None
        return Header(stamp=header.stamp, frame_id=target), [i.moved(R, t) for i in instances]

    def _on_get_poses(self, request: GetPoses.Request, response: GetPoses.Response) -> GetPoses.Response:
        """The latest processed frame's detections in ``request.frame_id`` (empty: the output frame), at once."""
        latest, catalog = self._latest, self.catalog
        if latest is None or catalog is None:
            response.message = f"{self._lifecycle}: no frame processed yet" if self._lifecycle == "active" else f"{self._lifecycle}: no poses"
            return response
        header, instances = latest
        try:
            out_header, out_instances = self._in_frame(request.frame_id or self._p("target_frame"), header, instances)
        except compat.TransformLookupError as e:
            response.message = str(e)
            return response
        response.detections = outputs.detections(out_header, out_instances, outputs.poses(out_instances), catalog)
        response.success = True
        return response

    def _publish(self, header: Header, frame: Frame, instances: list, out_header: Header, out_instances: list) -> None:
        """``~/overlay`` from the camera-frame ``header`` and ``instances``; the poses, detections,
        TF and markers from ``out_header`` and ``out_instances`` (the target frame's)."""
        posed = outputs.poses(out_instances)
        self.pub_poses.publish(outputs.pose_array(out_header, posed))
        self.pub_detections.publish(outputs.detections(out_header, out_instances, posed, self.catalog))
        if self._p("publish_tf"):
            self.tf.send(outputs.transforms(out_header, out_instances, posed, self._tf_prefix).transforms)
        if self._p("publish_markers"):
            self.pub_markers.publish(outputs.markers(out_header, out_instances, posed, self.catalog))
        self._latest = (header, instances)
        if self._p("overlay") and self.pub_overlay.get_subscription_count() > 0:
            self.pub_overlay.publish(numpy_to_image(draw_overlay(frame.rgb, frame.K, instances, self.catalog), "rgb8", header))
            self._stats.overlays += 1

    # ---------------------------------------------------------------- diagnostics
    def _tracks_now(self) -> dict | None:
        """The tracker's counts for ``/diagnostics``: taken now when no frame is being tracked (the
        re-acquisitions per minute age between frames: the input may have stopped), else the last
        tracked frame's; None before the first tracked frame and while a reset is pending."""
        tracker = self.tracker
        if self._track_stats is not None and tracker is not None and self._track_lock.acquire(blocking=False):
            try:
                self._track_stats = tracker.stats()
            finally:
                self._track_lock.release()
        return None if self._reset_pending else self._track_stats

    def _publish_diagnostics(self) -> None:
        """One status per concern, named ``densefusion: ...``, as diagnostic_updater would."""
        tasks = [(f"input {name}", f.status()) for name, f in self._input_freq.items()]
        tasks.append(("input sync", self._sync.status()))
        if self._sync.unmatched:
            self._drops.warn("input sync", self._sync.unmatched)
        tasks.append(("output poses", self._output_freq.status()))
        tasks.append(("input timestamps", self._stamps.status()))
        tasks.append(("processing time", self._budget.status()))
        level, message = (OK, "ok")
        if self._input_freq["color"].rate() > 0 and self._output_freq.rate() == 0 and self._p("continuous"):
            level, message = (WARN, "inputs arrive but no frame is processed")
        values = self._stats.summary(self._sync.sets, self._drops.counts)
        hardware = str(self.pipeline.device) if self.pipeline is not None else "unconfigured"
        values.update({"device": hardware, "lifecycle": self._lifecycle,
                       "input decoding": "raw" if self._raw_inputs else "rclpy", **{f"backend {k}": v for k, v in compat.backends().items()}})
        tasks.append(("pipeline", (level, message, values)))
        tasks.append(("tracks", tracks_status(self._mode, self._tracks_now())))
        status = [
            DiagnosticStatus(level=bytes([lvl]), name=f"{self.get_name()}: {name}", message=msg, hardware_id=hardware,
                             values=[KeyValue(key=k, value=str(v)) for k, v in vals.items()])
            for name, (lvl, msg, vals) in tasks
        ]
        self.pub_diag.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=status))

    def create_executor(self) -> Executor:
        """The executor :func:`process.run` spins this node with (the ``executor`` parameter)."""
        if self._executor_kind == "events":
            return compat.events_executor()(context=self.context)
        return MultiThreadedExecutor(num_threads=2, context=self.context)  # inputs keep flowing while ~/trigger waits

    def shutdown(self) -> None:
        """Stop the worker thread and the service threads (called before destroy_node)."""
        self._trigger_done.set()  # a ~/trigger call waiting for a frame answers (unsuccessfully) now
        for host in self._service_hosts:
            host.close()
        self._stop_worker(timeout=1.0)


class _ServiceHost:
    """A service of ``owner`` (``<owner's full name>/<name>``) served by a hidden helper node on its own thread."""

    def __init__(self, owner: Node, name: str, srv_type: Any, callback: Any) -> None:
        self._stop = False
        self.node = rclpy.create_node(
            f"_{owner.get_name()}_{name}", namespace=owner.get_namespace(), context=owner.context,
            use_global_arguments=False,  # a process-wide __node remap must not rename it onto the owner
        )  # fmt: skip
        self.node.create_service(srv_type, f"{owner.get_fully_qualified_name()}/{name}", callback)
        self.executor = SingleThreadedExecutor(context=owner.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name=f"densefusion_{name}", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.node.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=1.0)
        self.executor.shutdown(timeout_sec=0.5)
        self.node.destroy_node()


def valid_pose(R: np.ndarray, t: np.ndarray, tol: float = 1e-3) -> bool:
    """Finite rotation and translation, ``R`` orthonormal with ``det(R) = 1`` (within ``tol``)."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    if R.shape != (3, 3) or t.shape != (3,) or not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        return False
    return bool(abs(np.linalg.det(R) - 1.0) < tol and np.abs(R.T @ R - np.eye(3)).max() < tol)


class _Stats:
    """Counters and recent stage timings for the diagnostics (appends and increments only)."""

    def __init__(self) -> None:
        self.frames = 0
        self.overlays = 0
        self.withheld = 0
        self.untriggered = 0
        self.stage_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=100))

    def processed(self, result: FrameResult, processing_ms: float, latency_ms: float) -> None:
        self.frames += 1
        for stage, ms in result.timings_ms.items():
            self.stage_ms[stage].append(ms)
        self.stage_ms["node total"].append(processing_ms)
        self.stage_ms["latency stamp->published"].append(latency_ms)

    def summary(self, sets: int, dropped: dict[str, int]) -> dict[str, str]:
        """``sets received = frames processed + dropped (all reasons) + skipped waiting for a trigger (+ 1 in the slot)``."""
        out = {"sets received": str(sets), "frames processed": str(self.frames), "overlays published": str(self.overlays),
               "poses withheld (invalid)": str(self.withheld), "skipped (waiting for trigger)": str(self.untriggered)}
        for stage, values in list(self.stage_ms.items()):
            if values:
                out[f"{stage} (ms, mean)"] = f"{float(np.mean(values)):.1f}"
        for reason, count in list(dropped.items()):
            out[f"dropped: {reason}"] = str(count)
        return out


def main(args: list[str] | None = None) -> NoReturn:
    """Run the node until SIGINT or SIGTERM; exit code 0, or 2 when it cannot start."""
    process.exit_now(process.run(DenseFusionNode, args))


if __name__ == "__main__":
    main()
