"""``perception_node``: camera in; depth, semantics, normals and a point cloud out (an rclpy lifecycle node).

Lifecycle: configure reads and validates the parameters and creates the publishers; activate loads the
model through the backend contract, subscribes and starts the worker; deactivate unsubscribes, stops the
worker and frees the model; cleanup destroys the publishers; shutdown does whatever of those is left.

Threading (latest frame wins, two pipelined stages): the subscription callback only stores the newest
message in a one-slot mailbox. Stage 1 ("inference") takes it, wraps its pixels and runs the deploy graph
(``inference.frame_pipeline.FramePipeline``: resize, normalise, network, resize back, argmax, colours,
points, all in one graph on the backend); stage 2 ("publisher") fills the messages from the graph's
buffers and publishes them. Each hand-off is a one-slot "newest wins" mailbox, so frame N+1 is inferred
while frame N is published; a frame replaced in a mailbox is counted as dropped at that stage. Outputs
nobody subscribes to are not computed. Bad input is logged (throttled, per kind), counted and reported
on /diagnostics, and the next good frame is served.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from mtl_perception.fileio import file_sha256
from mtl_perception.inference.camera_info import CameraInfoError, validate_camera_info
from mtl_perception.inference.frame_pipeline import CameraInfoMismatch, FrameOutputs, FramePipeline
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.ros import parameters as params
from mtl_perception.ros.diagnostics import BACKEND_FAILURE, Health, assess, latency_values, make_status
from mtl_perception.ros.frame_slot import Frame, LatestFrameSlot
from mtl_perception.ros.image_codec import ImageDecodeError, compressed_msg_to_array, image_msg_to_array
from mtl_perception.ros.outputs import build_messages, class_table_json, graph_outputs, wanted_outputs
from mtl_perception.ros.stats import STAGES, Counters, LatencyWindow, RateMeter

NODE_NAME = "perception_node"
LOG_THROTTLE_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
OUTPUT_TYPES = {
    "depth": Image,
    "depth_camera_info": CameraInfo,
    "depth_color": Image,
    "semantic": Image,
    "semantic_color": Image,
    "semantic_overlay": Image,
    "normals": Image,
    "points": PointCloud2,
}


MAX_REASON_CHARS = 500  # longest refusal reason returned to `ros2 param set`
RATE_WAIT_SLICE_S = 0.5  # the rate limiter re-reads processing.max_rate_hz at least this often


@dataclass
class Inferred:
    """A frame after stage 1: its graph buffers, the outputs they serve and the stage times so far."""

    frame: Frame
    result: FrameOutputs
    wanted: set[str]
    times: dict[str, float] = field(default_factory=dict)


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last ``depth`` volatile QoS with the named reliability."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy, durability=DurabilityPolicy.VOLATILE)


class PerceptionNode(LifecycleNode):
    """The multi-task perception lifecycle node (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare_all(self)
        self._state = "unconfigured"
        self._settings: params.Settings | None = None
        self._publishers_by_key: dict[str, Any] = {}
        self._class_pub: Any = None
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._subscriptions_active: list[Any] = []
        self._pipeline: FramePipeline | None = None
        self._backend_kind = ""
        self._pipeline_lock = threading.Lock()
        self._backend_error: str | None = None
        self._model_path: Path | None = None
        self._model_sha256 = ""
        self._camera_info: CameraInfo | None = None
        self._camera_info_lock = threading.Lock()
        self._slot: LatestFrameSlot[Frame] = LatestFrameSlot()
        self._publish_slot: LatestFrameSlot[Inferred] = LatestFrameSlot()
        self._worker: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._pending_settings: params.Settings | None = None
        self._counters = Counters()
        self._latency = LatencyWindow()
        self._input_rate = RateMeter()
        self._output_rate = RateMeter()
        self._last_log: dict[str, float] = {}
        self._activated_at = 0.0
        self._last_tick = time.monotonic()
        self._counts_at_last_tick: dict[str, int] = {}
        self.add_on_set_parameters_callback(self._check_parameter_change)
        self.add_post_set_parameters_callback(self._apply_parameter_change)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._settings = params.settings_from_values(params.read_values(self))
        except params.ParameterError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        settings = self._settings
        out_qos = make_qos(settings.output_reliability, settings.output_qos_depth)
        for key, topic in params.OUTPUT_TOPICS.items():
            self._publishers_by_key[key] = self.create_lifecycle_publisher(OUTPUT_TYPES[key], topic, out_qos)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._class_pub = self.create_lifecycle_publisher(String, params.CLASS_TABLE_TOPIC, latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._state = "inactive"
        self.get_logger().info(f"configured: outputs {[k for k, on in settings.outputs.items() if on]}, input '{self.resolve_topic_name(self._input_topic())}'")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = self._settings
        assert settings is not None
        try:
            self._load_model(settings)
        except Exception as exc:  # any load failure: stay inactive and say why
            self._backend_error = str(exc)
            self._free_model()
            self.get_logger().error(f"activate failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        in_qos = make_qos(settings.reliability, settings.qos_depth)
        if settings.compressed:
            self._subscriptions_active.append(self.create_subscription(CompressedImage, self._input_topic(), self._on_compressed, in_qos))
        else:
            self._subscriptions_active.append(self.create_subscription(Image, self._input_topic(), self._on_image, in_qos))
        self._subscriptions_active.append(self.create_subscription(CameraInfo, settings.camera_info_topic, self._on_camera_info, in_qos))
        self._slot.reopen()
        self._publish_slot.reopen()
        self._worker = threading.Thread(target=self._run_inference_stage, name="perception_inference", daemon=True)
        self._publisher = threading.Thread(target=self._run_publish_stage, name="perception_publisher", daemon=True)
        self._worker.start()
        self._publisher.start()
        self._activated_at = time.monotonic()
        self._state = "active"
        result = super().on_activate(state)
        self._publish_class_table()
        self.get_logger().info(f"active: {self._backend_kind} backend, model {self._model_path} (sha256 {self._model_sha256[:12]})")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state = "inactive"
        self.get_logger().info("deactivated: unsubscribed and freed the model")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        self._state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self._state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error during a transition from '{state.label}'; releasing everything and returning to unconfigured")
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop processing and destroy every resource (safe to call in any state, more than once)."""
        self._stop_processing()
        self._destroy_outputs()
        self._state = "unconfigured"

    def _stop_processing(self) -> None:
        for subscription in self._subscriptions_active:
            self.destroy_subscription(subscription)
        self._subscriptions_active = []
        self._slot.close()
        self._publish_slot.close()
        for name in ("_worker", "_publisher"):
            thread = getattr(self, name)
            if thread is not None:
                thread.join(timeout=30.0)
                if thread.is_alive():
                    self.get_logger().error(f"{thread.name} thread did not stop within 30 s (inference stuck?)")
                setattr(self, name, None)
        self._free_model()
        with self._camera_info_lock:
            self._camera_info = None

    def _destroy_outputs(self) -> None:
        for publisher in self._publishers_by_key.values():
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_by_key = {}
        if self._class_pub is not None:
            self.destroy_lifecycle_publisher(self._class_pub)
            self._class_pub = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    @property
    def lifecycle_state(self) -> str:
        """unconfigured | inactive | active | finalized (as this node last reached it)."""
        return self._state

    # ------------------------------------------------------------------ model
    def _load_model(self, settings: params.Settings) -> None:
        path = Path(settings.model_path).expanduser() if settings.model_path else params.default_model_path()
        if not path.is_file():
            problem = "is not a regular file" if path.exists() else "not found"
            raise FileNotFoundError(f"model file {problem}: {path}; set model.path to an exported model (mtl-perception export --checkpoint CKPT --out MODEL.onnx)")
        self._model_path = path
        self._model_sha256 = file_sha256(path)
        try:
            self._set_backend(settings.backend, params.backend_options(settings, settings.backend, settings.provider), settings.provider)
        except Exception as exc:
            if not settings.fallback_backend or (isinstance(exc, ModelFileError) and settings.fallback_backend == settings.backend):
                raise  # no fallback, or the file itself is bad: the same backend on CPU would fail on it again
            self.get_logger().error(f"backend '{settings.backend}' failed to load ({exc}); falling back to '{settings.fallback_backend}' on CPU")
            self._set_backend(settings.fallback_backend, params.backend_options(settings, settings.fallback_backend, "cpu"), "cpu")
        self._backend_error = None

    def _set_backend(self, kind: str, options: dict[str, Any], provider: str) -> None:
        settings = self._settings
        assert settings is not None
        cache = Path(settings.engine_cache_dir).expanduser() / "deploy" if settings.engine_cache_dir else None
        pipeline = FramePipeline(self._model_path, kind, options, params.frame_settings(settings), cache_dir=cache)
        self._check_palette(settings, pipeline.metadata)
        with self._pipeline_lock:
            old, self._pipeline = self._pipeline, pipeline
            self._backend_kind = f"{kind} ({provider})"
        if old is not None:
            old.close()

    def _free_model(self) -> None:
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    def _fall_back(self, exc: Exception) -> bool:
        """After a runtime inference failure, switch to the fallback backend; True if it did."""
        settings = self._settings
        if settings is None or not settings.fallback_backend or self._backend_kind.startswith(f"{settings.fallback_backend} (cpu)"):
            return False
        failed = self._backend_kind
        self.get_logger().error(f"backend {failed} failed at run time ({type(exc).__name__}: {exc}); switching to '{settings.fallback_backend}' on CPU")
        try:
            self._set_backend(settings.fallback_backend, params.backend_options(settings, settings.fallback_backend, "cpu"), "cpu")
        except Exception as load_exc:
            self._backend_error = f"fallback backend '{settings.fallback_backend}' failed to load: {load_exc}"
            return False
        self._counters.add("backend_fallbacks")
        # ERROR on /diagnostics for this period, although the fallback serves the frames
        self._counters.problem(BACKEND_FAILURE, f"backend {failed} failed at run time ({type(exc).__name__}: {exc}); now running on {self._backend_kind}")
        return True

    @staticmethod
    def _check_palette(settings: params.Settings, meta: Any) -> None:
        if settings.palette_override is not None and len(settings.palette_override) < len(meta.class_names):
            raise params.ParameterError(f"palette.override has {len(settings.palette_override)} colours but the model has {len(meta.class_names)} classes")

    def _publish_class_table(self) -> None:
        pipeline = self._pipeline
        if self._class_pub is None or pipeline is None:
            return
        meta = pipeline.metadata
        self._class_pub.publish(String(data=class_table_json(list(meta.class_names), pipeline.palette_rgb, meta.ignore_index, self._model_sha256)))

    # ------------------------------------------------------------------ parameters
    def _check_parameter_change(self, changes: list[rclpy.parameter.Parameter]) -> SetParametersResult:
        """Accept or refuse a change (never raises into rclpy); the accepted settings wait for the post-set callback."""
        try:
            values = params.read_values(self)
            for change in changes:
                reason = params.change_rejection(change.name, self._state in ("inactive", "active"))
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                values[change.name] = change.value
            settings = params.settings_from_values(values, self._settings)
            pipeline = self._pipeline
            if pipeline is not None:
                meta = pipeline.metadata
                params.depth_range(settings, meta.depth_min, meta.depth_max)
                self._check_palette(settings, meta)
        except params.ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc)[:MAX_REASON_CHARS])
        except Exception as exc:  # a value no check foresaw: refuse it, say what, keep running
            return SetParametersResult(successful=False, reason=f"invalid value ({type(exc).__name__}: {str(exc)[:200]})")
        self._pending_settings = settings
        return SetParametersResult(successful=True)

    def _apply_parameter_change(self, changes: list[rclpy.parameter.Parameter]) -> None:
        """Put the checked settings in force (never raises into rclpy)."""
        settings, self._pending_settings = self._pending_settings, None
        if self._settings is None or settings is None:
            return
        self._settings = settings
        pipeline = self._pipeline
        try:
            if pipeline is not None:
                pipeline.configure(params.frame_settings(settings))  # runtime inputs: no graph rebuild
                if any(change.name == "palette.override" for change in changes):
                    self._publish_class_table()
        except Exception as exc:  # checked before: should not happen; never take the node down for it
            self.get_logger().error(f"could not apply {[c.name for c in changes]}: {type(exc).__name__}: {exc}")
        self._slot.wake()  # a new processing.max_rate_hz takes effect now, not after the wait already begun
        self.get_logger().info("parameters changed: " + ", ".join(f"{c.name}={str(c.value)[:80]!r}" for c in changes))

    # ------------------------------------------------------------------ inputs
    def _input_topic(self) -> str:
        settings = self._settings
        assert settings is not None
        return f"{settings.image_topic}/compressed" if settings.compressed else settings.image_topic

    def _on_image(self, msg: Image) -> None:
        self._input_rate.tick()
        self._slot.put(Frame(msg, time.monotonic()))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._input_rate.tick()
        self._slot.put(Frame(msg, time.monotonic(), compressed=True))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            validate_camera_info(msg)
        except CameraInfoError as exc:
            with self._camera_info_lock:
                self._camera_info = None
            self._report("bad_camera_info", f"{exc} (topic '{self.resolve_topic_name(self._settings.camera_info_topic)}'); points and depth/camera_info paused")
            return
        with self._camera_info_lock:
            self._camera_info = msg

    # ------------------------------------------------------------------ stage 1: decode + deploy graph
    def _wait_for_rate(self, last_start: float) -> bool:
        """Hold frames back to processing.max_rate_hz (re-read while waiting); True once the node stops."""
        while not self._slot.closed:
            settings = self._settings
            rate = settings.max_rate_hz if settings is not None else 0.0
            remaining = last_start + 1.0 / rate - time.monotonic() if rate > 0 else 0.0
            if remaining <= 0:
                return False
            self._slot.wait_closed(min(remaining, RATE_WAIT_SLICE_S))
        return True

    def _run_inference_stage(self) -> None:
        last_start = -1e9
        while not self._slot.closed:
            if self._wait_for_rate(last_start):
                return
            frame = self._slot.take(timeout=0.5)
            if frame is None:
                continue
            last_start = time.monotonic()
            try:
                inferred = self._infer_frame(frame)
                if inferred is not None:
                    self._publish_slot.put(inferred)
            except Exception as exc:  # last line of defence: the stage never dies
                self._count_failure()
                self._report("internal_error", f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _infer_frame(self, frame: Frame) -> Inferred | None:
        """decode (a view of the camera bytes) -> deploy graph, for the outputs someone wants."""
        settings, pipeline = self._settings, self._pipeline
        if settings is None or pipeline is None:
            return None
        with self._camera_info_lock:
            info = self._camera_info
        subscribers = {key: pub.get_subscription_count() for key, pub in self._publishers_by_key.items()}
        wanted = wanted_outputs(settings.outputs, subscribers, list(pipeline.metadata.tasks), info is not None)
        if not wanted:
            self._counters.add("skipped_no_subscribers")
            return None
        times = {"start": time.perf_counter()}
        pixels = self._decode(frame, settings)
        if pixels is None:
            return None
        times["decode"] = time.perf_counter()
        result = self._run_graph(pixels, frame, wanted, info)
        if result is None:
            return None
        if result.geometry is None:
            wanted -= {"points", "depth_camera_info"}
        times["graph"] = time.perf_counter()
        return Inferred(frame, result, wanted, times)

    def _decode(self, frame: Frame, settings: params.Settings) -> tuple[np.ndarray, str] | None:
        """(pixels, encoding) of the frame, or None after reporting why it cannot be read."""
        try:
            if frame.compressed:
                return compressed_msg_to_array(frame.msg, settings.max_pixels)
            return image_msg_to_array(frame.msg, settings.max_pixels, copy=False), frame.msg.encoding
        except (ImageDecodeError, ValueError) as exc:
            self._reject_frame(exc)
            return None

    def _reject_frame(self, exc: Exception) -> None:
        self._count_failure()
        self._report("bad_input", f"frame on '{self.resolve_topic_name(self._input_topic())}' rejected: {exc}")

    def _run_graph(self, pixels: tuple[np.ndarray, str], frame: Frame, wanted: set[str], info: CameraInfo | None) -> FrameOutputs | None:
        """The deploy graph's buffers of one frame; None after reporting a bad frame or a failed backend."""
        names = graph_outputs(wanted)
        for _attempt in range(2):
            with self._pipeline_lock:
                pipeline = self._pipeline
            if pipeline is None:
                return None
            try:
                try:
                    result = pipeline.run(pixels[0], pixels[1], names, info)
                except CameraInfoMismatch as exc:
                    self._report("camera_info_mismatch", str(exc))
                    result = pipeline.run(pixels[0], pixels[1], names, None)
                self._backend_error = None
                return result
            except (ValueError, ImageDecodeError) as exc:  # the frame itself (encoding, shape): not the backend's fault
                self._reject_frame(exc)
                return None
            except Exception as exc:
                if self._fall_back(exc):
                    continue
                self._backend_error = f"{type(exc).__name__}: {exc}"
                self._count_failure()
                self._report("inference_error", f"inference failed on {self._backend_kind}: {exc}")
                return None
        return None

    # ------------------------------------------------------------------ stage 2: messages + publish
    def _run_publish_stage(self) -> None:
        while not self._publish_slot.closed:
            inferred = self._publish_slot.take(timeout=0.5)
            if inferred is None:
                continue
            try:
                self._publish(inferred)
            except Exception as exc:  # last line of defence: the stage never dies
                self._count_failure()
                self._report("internal_error", f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _publish(self, inferred: Inferred) -> None:
        settings = self._settings
        if settings is None:
            return
        times = inferred.times
        times["handoff"] = time.perf_counter()
        messages = build_messages(inferred.wanted, inferred.result, inferred.frame.msg.header, settings.points_organized)
        times["messages"] = time.perf_counter()
        for key, msg in messages.items():
            publisher = self._publishers_by_key.get(key)
            if publisher is not None:
                publisher.publish(msg)
        times["publish"] = time.perf_counter()
        self._record(times, inferred.frame)

    def _record(self, times: dict[str, float], frame: Frame) -> None:
        """Stage latencies and counters of one published frame (the hand-off wait is not a stage)."""
        self._latency.add("decode", times["decode"] - times["start"])
        self._latency.add("graph", times["graph"] - times["decode"])
        self._latency.add("messages", times["messages"] - times["handoff"])
        self._latency.add("publish", times["publish"] - times["messages"])
        self._latency.add("total", time.monotonic() - frame.received)
        self._counters.add("processed")
        self._output_rate.tick()

    def _count_failure(self) -> None:
        self._counters.add("failed")

    def _report(self, kind: str, text: str) -> None:
        """Count a problem, keep it for diagnostics, and log it at most once per LOG_THROTTLE_S per kind."""
        self._counters.problem(kind, text)
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) >= LOG_THROTTLE_S:
            self._last_log[kind] = now
            self.get_logger().warning(f"{text} [{kind} #{self._counters.get(kind)}; repeats of this kind are logged at most every {LOG_THROTTLE_S:.0f} s]")

    # ------------------------------------------------------------------ diagnostics
    def diagnostics_values(self) -> dict[str, Any]:
        """The figures the diagnostics report (also handy for tests and benchmarks)."""
        counts = self._counters.snapshot()
        values: dict[str, Any] = {
            "state": self._state,
            "input_topic": self.resolve_topic_name(self._input_topic()) if self._settings else "",
            "input_rate_hz": self._input_rate.rate(),
            "output_rate_hz": self._output_rate.rate(),
            "frames_received": self._slot.received,
            "frames_processed": counts.get("processed", 0),
            "frames_dropped": self._slot.dropped + self._publish_slot.dropped,
            "frames_dropped_before_inference": self._slot.dropped,
            "frames_dropped_before_publishing": self._publish_slot.dropped,
            "frames_failed": counts.get("failed", 0),
            "frames_skipped_no_subscribers": counts.get("skipped_no_subscribers", 0),
            "bad_input": counts.get("bad_input", 0),
            "bad_camera_info": counts.get("bad_camera_info", 0),
            "camera_info_mismatch": counts.get("camera_info_mismatch", 0),
            "inference_errors": counts.get("inference_error", 0),
            "backend_fallbacks": counts.get("backend_fallbacks", 0),
            "backend": self._backend_kind or "none",
            "model": str(self._model_path or ""),
            "model_sha256": self._model_sha256,
        }
        values.update(latency_values(self._latency.summary()))
        return values

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        last_input = self._input_rate.last()
        counts = self._counters.snapshot()
        in_period = {name: counts.get(name, 0) - self._counts_at_last_tick.get(name, 0) for name in ("processed", "failed")}
        health = Health(
            state=self._state,
            seconds_since_input=None if last_input is None or last_input < self._activated_at else now - last_input,
            seconds_active=now - self._activated_at if self._state == "active" else 0.0,
            stall_timeout_s=self._settings.stall_timeout_s if self._settings else 2.0,
            input_topic=self.resolve_topic_name(self._input_topic()) if self._settings else "",
            processed_in_period=in_period["processed"],
            failed_in_period=in_period["failed"],
            problems=self._counters.recent_problems(self._last_tick),
            backend_error=self._backend_error,
        )
        self._counts_at_last_tick = counts
        self._last_tick = now
        level, message = assess(health)
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [make_status(f"{self.get_name()}: perception", self.get_fully_qualified_name(), level, message, self.diagnostics_values())]
        if self._diag_pub is not None:
            self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``perception_node``: run the node until SIGINT/SIGTERM.

    Configures and activates itself unless started with ``--ros-args -p autostart:=false`` (then a
    lifecycle manager drives it). Exit code 0 on a clean shutdown, 1 when start-up fails.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = PerceptionNode()
    except Exception as exc:  # bad parameter overrides (type or range) are raised at declaration
        print(f"perception_node: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().error("autostart: configure failed; fix the parameters, then `ros2 lifecycle set` configure")
        elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().error("autostart: activate failed (see above); fix it, then `ros2 lifecycle set` activate")
    else:
        node.get_logger().info("autostart is false: waiting for a lifecycle manager to configure and activate")
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # the signal handler has already shut the context down: log to the console only (no /rosout)
        print(f"[{node.get_fully_qualified_name()}] shutting down: releasing the model and the topics", file=sys.stderr, flush=True)
        node.release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
