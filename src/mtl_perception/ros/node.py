"""``perception_node``: cameras in; depth, semantics, normals and a point cloud out (an rclpy lifecycle node).

Lifecycle: configure reads and validates the parameters and creates the publishers; activate loads the
model through the backend contract, subscribes and starts the two stages; deactivate unsubscribes,
stops them and frees the model; cleanup destroys the publishers; shutdown does whatever of those is left.

One camera (``input.*`` topics, outputs under the node's namespace) or several (``cameras``, outputs under
each camera's namespace: ``ros/camera_channel.py``), always one model and one backend in memory.

Threading (latest frame wins, two pipelined stages): a subscription callback only stores the newest
message of its camera in that camera's one-slot mailbox. Stage 1 ("inference") gathers the newest frame
of every camera that has one (waiting at most ``processing.batch_wait_ms`` for the other live cameras),
wraps their pixels and runs the deploy graph (``inference.frame_pipeline.FramePipeline``: resize,
normalise, network, resize back, argmax, colours, points, all in one graph on the backend), one call per
camera size with the frames batched; stage 2 ("publisher") fills the messages from the graph's buffers
and publishes them, each with its frame's header. The hand-off is a one-slot "newest wins" mailbox, so
frame N+1 is inferred while frame N is published; a frame replaced in a mailbox is counted as dropped at
that stage. Outputs nobody subscribes to are not computed. Bad input is logged (throttled, per camera and
kind), counted and reported on /diagnostics, and the next good frame is served.

Engines before frames: on a backend that compiles TensorRT engines (``engine_plan.builds_engines``) the
graphs are built for the outputs the parameters *enable*, off the serving thread, as soon as a camera's
size is known (its camera info, when a deploy graph for that size was prepared before, e.g. by
``mtl-perception build-engine --deploy``; else its first frame); every subscriber subset is served from
that engine. Enabling an output at run time builds the new engine in the background while the current
one serves; /diagnostics says what is building and since when. A camera's newest frame waits (held, not
queued) while its first engine builds. On ONNX Runtime and torch a graph is built per subscribed output
set on the serving thread (under a second there; a graph cut to what is subscribed runs 2-5x faster).
"""
from __future__ import annotations

import collections
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

from mtl_perception.colorize import class_table_json
from mtl_perception.fileio import file_sha256
from mtl_perception.inference.camera_info import CameraInfoError, image_size, validate_camera_info
from mtl_perception.inference.frame_pipeline import (
    CameraInfoMismatch,
    FrameOutputs,
    FramePipeline,
    GraphBuild,
    GraphPending,
    graph_batch_size,
    graph_input,
)
from mtl_perception.inference.image_codec import ImageDecodeError, compressed_msg_to_array, image_msg_to_array
from mtl_perception.inference.memory_budget import LARGE_FRAME_PIXELS, check_frame, release_freed_memory
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.ros import engine_plan
from mtl_perception.ros import parameters as params
from mtl_perception.ros.camera_channel import (
    CAMERA_NAME,
    CAMERA_NAMES_PARAMETER,
    CAMERA_PARAMETER_HELP,
    CAMERA_PARAMETERS,
    CameraChannel,
    CameraConfigError,
    CameraSpec,
    camera_defaults,
    camera_specs,
)
from mtl_perception.ros.diagnostics import BACKEND_FAILURE, CACHE_FILE_REBUILT, CacheRepairs, Health, assess, latency_values, make_status
from mtl_perception.ros.frame_slot import Frame, LatestFrameSlot
from mtl_perception.ros.outputs import build_messages, graph_outputs, wanted_outputs
from mtl_perception.ros.stats import Counters

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


LIVE_CAMERA_S = 1.0  # a camera that sent a frame this recently is waited for (batch_wait_ms) when batching
MAX_REASON_CHARS = 500  # longest refusal reason returned to `ros2 param set`
RATE_WAIT_SLICE_S = 0.5  # the rate limiter re-reads processing.max_rate_hz at least this often


@dataclass
class Inferred:
    """A frame of one camera through stage 1: its pixels and camera info, then its graph buffers and stage times."""

    camera: CameraChannel
    frame: Frame
    result: FrameOutputs | None
    wanted: set[str]
    times: dict[str, float] = field(default_factory=dict)
    pixels: tuple[np.ndarray, str] | None = None  # as the deploy graph takes them
    info: CameraInfo | None = None  # matched to the frame's stamp


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last ``depth`` volatile QoS with the named reliability."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy, durability=DurabilityPolicy.VOLATILE)


class PerceptionNode(LifecycleNode):
    """The multi-task perception lifecycle node (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare_all(self)
        self._camera_names = self._declare_cameras()
        self._state = "unconfigured"
        self._settings: params.Settings | None = None
        self._cameras: list[CameraChannel] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._subscriptions_active: list[Any] = []
        self._pipeline: FramePipeline | None = None
        self._backend_kind = ""
        self._pipeline_lock = threading.Lock()
        self._backend_error: str | None = None
        self._model_path: Path | None = None
        self._model_sha256 = ""
        self._arrivals = threading.Condition()  # notified by every camera callback: stage 1 gathers the cameras' newest frames
        self._running = False
        self._publish_slot: LatestFrameSlot[list[Inferred]] = LatestFrameSlot()
        self._worker: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._pending_settings: params.Settings | None = None
        self._backend_counters = Counters()  # problems of the shared backend (fallbacks, inference errors)
        self._cache_repairs = CacheRepairs()  # damaged cache files rebuilt since this node began
        self._batch_sizes: collections.Counter[int] = collections.Counter()
        self._trims_due = 0  # frames still to publish after one above memory_budget.LARGE_FRAME_PIXELS, each followed by a heap trim
        self._graph_busy_s = 0.0  # stage 1 time inside the deploy graph since the last diagnostics tick
        self._padding_frames = 0  # batch places filled with a copy to reach a built graph size (graph_batch_sizes)
        self._last_log: dict[str, float] = {}
        self._held: dict[str, tuple[Frame, tuple[int, int, str]]] = {}  # per camera: its newest frame, waiting for its first engine
        self._planned: set[tuple[Any, ...]] = set()  # camera layouts whose engines were asked for (engine outputs only)
        self._activated_at = 0.0
        self._last_tick = time.monotonic()
        # Iron and later apply an accepted change once rclpy has stored it (post-set callback); Humble's rclpy has only
        # the on-set callback, which runs after rclpy's own descriptor checks: there the change is applied from it.
        post_set = getattr(self, "add_post_set_parameters_callback", None)
        self._apply_on_set = post_set is None
        self.add_on_set_parameters_callback(self._check_parameter_change)
        if post_set is not None:
            post_set(self._apply_parameter_change)

    def _declare_cameras(self) -> list[str]:
        """Declare ``cameras.names`` (read once at start-up) and the four parameters of each named camera."""
        from rcl_interfaces.msg import ParameterDescriptor, ParameterType
        from rclpy.parameter import Parameter

        described = ParameterDescriptor(type=ParameterType.PARAMETER_STRING_ARRAY, read_only=True,
                                        description="Names of the cameras this node serves with one model; empty = one camera on input.* "
                                                    "topics. Each NAME has cameras.NAME.image_topic, .camera_info_topic, .compressed, .namespace")
        names = self.declare_parameter(CAMERA_NAMES_PARAMETER, Parameter.Type.STRING_ARRAY, described).value or []
        for name in names:
            for key, default in camera_defaults(name).items():
                if CAMERA_NAME.match(name):
                    self.declare_parameter(f"cameras.{name}.{key}", default, ParameterDescriptor(
                        description=CAMERA_PARAMETER_HELP[key], read_only=True))
        return list(names)

    def _camera_specs(self, settings: params.Settings) -> list[CameraSpec]:
        if not self._camera_names:
            return [CameraSpec("", settings.image_topic, settings.camera_info_topic, settings.compressed, "")]
        values = {name: {key: self.get_parameter(f"cameras.{name}.{key}").value for key in CAMERA_PARAMETERS if self.has_parameter(f"cameras.{name}.{key}")}
                  for name in self._camera_names}
        return camera_specs(self._camera_names, values)

    # ------------------------------------------------------------------ single-camera views (tests, tools)
    @property
    def _slot(self) -> LatestFrameSlot[Frame]:
        return self._cameras[0].slot if self._cameras else LatestFrameSlot()

    @property
    def _publishers_by_key(self) -> dict[str, Any]:
        return self._cameras[0].publishers if self._cameras else {}

    @property
    def _camera_info(self) -> CameraInfo | None:
        return self._cameras[0].infos.latest() if self._cameras else None

    @property
    def _counters(self) -> Counters:
        return self._cameras[0].counters if self._cameras else self._backend_counters

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._settings = params.settings_from_values(params.read_values(self))
            specs = self._camera_specs(self._settings)
            for spec in specs:
                self._check_topics(spec)
        except (params.ParameterError, CameraConfigError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        settings = self._settings
        out_qos = make_qos(settings.output_reliability, settings.output_qos_depth)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._cameras = [CameraChannel(spec) for spec in specs]
        for camera in self._cameras:
            for key, topic in params.OUTPUT_TOPICS.items():
                camera.publishers[key] = self.create_lifecycle_publisher(OUTPUT_TYPES[key], camera.spec.output_topic(topic), out_qos)
            camera.class_publisher = self.create_lifecycle_publisher(String, camera.spec.output_topic(params.CLASS_TABLE_TOPIC), latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._state = "inactive"
        inputs = ", ".join(f"'{self.resolve_topic_name(c.spec.input_topic)}'" for c in self._cameras)
        self.get_logger().info(f"configured: outputs {[k for k, on in settings.outputs.items() if on]}, input(s) {inputs}")
        self.get_logger().info(params.memory_budget_note(settings))
        return super().on_configure(state)

    def _check_topics(self, spec: CameraSpec) -> None:
        """ParameterError naming the parameter when a camera's topic or namespace is not a valid ROS name."""
        from rclpy.validate_topic_name import validate_topic_name

        where = f"cameras.{spec.name}" if spec.name else "input"
        for key, topic in (("image_topic", spec.input_topic), ("camera_info_topic", spec.camera_info_topic), ("namespace", spec.output_topic("depth"))):
            try:
                validate_topic_name(self.resolve_topic_name(topic))
            except Exception as exc:  # rclpy raises InvalidTopicNameException (and others for odd characters)
                raise params.ParameterError(f"{where}.{key}: '{topic[:80]}' is not a valid ROS topic name ({str(exc).splitlines()[0][:120]})") from None

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
        for camera in self._cameras:
            spec = camera.spec
            kind = CompressedImage if spec.compressed else Image
            self._subscriptions_active.append(self.create_subscription(kind, spec.input_topic, lambda msg, c=camera: self._on_image(c, msg), in_qos))
            self._subscriptions_active.append(self.create_subscription(CameraInfo, spec.camera_info_topic, lambda msg, c=camera: self._on_camera_info(c, msg), in_qos))
            camera.slot.reopen()
        self._publish_slot.reopen()
        self._running = True
        self._worker = threading.Thread(target=self._run_inference_stage, name="perception_inference", daemon=True)
        self._publisher = threading.Thread(target=self._run_publish_stage, name="perception_publisher", daemon=True)
        self._worker.start()
        self._publisher.start()
        self._activated_at = time.monotonic()
        self._state = "active"
        result = super().on_activate(state)
        self._publish_class_table()
        self.get_logger().info(f"active: {self._backend_kind} backend, model {self._model_path} (sha256 {self._model_sha256[:12]}), {len(self._cameras)} camera(s)")
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
        with self._arrivals:
            self._running = False
            for camera in self._cameras:
                camera.slot.close()
            self._arrivals.notify_all()
        self._publish_slot.close()
        for name in ("_worker", "_publisher"):
            thread = getattr(self, name)
            if thread is not None:
                thread.join(timeout=30.0)
                if thread.is_alive():
                    self.get_logger().error(f"{thread.name} thread did not stop within 30 s (inference stuck?)")
                setattr(self, name, None)
        self._free_model()
        self._held.clear()
        for camera in self._cameras:
            camera.infos.clear()

    def _destroy_outputs(self) -> None:
        for camera in self._cameras:
            for publisher in camera.publishers.values():
                self.destroy_lifecycle_publisher(publisher)
            camera.publishers = {}
            if camera.class_publisher is not None:
                self.destroy_lifecycle_publisher(camera.class_publisher)
                camera.class_publisher = None
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
        path = engine_plan.model_file(settings)
        if not path.is_file():
            problem = "is not a regular file" if path.exists() else "not found"
            raise FileNotFoundError(f"model file {problem}: {path}; set model.path to an exported model (mtl-perception export --checkpoint CKPT --out MODEL.onnx)")
        self._model_path = path
        self._model_sha256 = file_sha256(path)
        try:
            self._set_backend(settings.backend, settings.provider)
        except Exception as exc:
            if not settings.fallback_backend or (isinstance(exc, ModelFileError) and settings.fallback_backend == settings.backend):
                raise  # no fallback, or the file itself is bad: the same backend on CPU would fail on it again
            self.get_logger().error(f"backend '{settings.backend}' failed to load ({exc}); falling back to '{settings.fallback_backend}' on CPU")
            self._set_backend(settings.fallback_backend, "cpu")
        self._backend_error = None

    def _set_backend(self, kind: str, provider: str) -> None:
        """Load backend ``kind`` on ``provider`` (``engine_plan.node_pipeline``) and put it in service."""
        settings = self._settings
        assert settings is not None and self._model_path is not None
        pipeline = engine_plan.node_pipeline(settings, self._model_path, kind, provider, len(self._cameras))
        self._check_palette(settings, pipeline.metadata)
        if engine_plan.builds_engines(kind, provider):
            pipeline.serve_from(engine_plan.engine_outputs(settings.outputs, pipeline.metadata.tasks), on_built=self._on_graph_built)
        with self._pipeline_lock:
            old, self._pipeline = self._pipeline, pipeline
            self._backend_kind = f"{kind} ({provider})"
            self._planned.clear()
        if old is not None:
            old.close()
        self._plan_engines()

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
            self._set_backend(settings.fallback_backend, "cpu")
        except Exception as load_exc:
            self._backend_error = f"fallback backend '{settings.fallback_backend}' failed to load: {load_exc}"
            return False
        self._backend_counters.add("backend_fallbacks")
        # ERROR on /diagnostics for this period, although the fallback serves the frames
        self._backend_counters.problem(BACKEND_FAILURE, f"backend {failed} failed at run time ({type(exc).__name__}: {exc}); now running on {self._backend_kind}")
        return True

    @staticmethod
    def _check_palette(settings: params.Settings, meta: Any) -> None:
        if settings.palette_override is not None and len(settings.palette_override) < len(meta.class_names):
            raise params.ParameterError(f"palette.override has {len(settings.palette_override)} colours but the model has {len(meta.class_names)} classes")

    # ------------------------------------------------------------------ engines (backends that compile TensorRT engines)
    def _plan_engines(self) -> None:
        """Serve the enabled outputs and ask for the engines of every camera layout known so far (after a new
        pipeline or a parameter change); a no-op on backends that build per subscribed output set."""
        settings, pipeline = self._settings, self._pipeline
        if settings is None or pipeline is None or pipeline.engine_outputs is None:
            return
        outputs = engine_plan.engine_outputs(settings.outputs, pipeline.metadata.tasks)
        if outputs != pipeline.engine_outputs:
            pipeline.serve_from(outputs)
        for camera in self._cameras:
            if camera.layout is not None:
                shape, encoding = camera.layout
                self._plan_layout(shape[0], shape[1], encoding)

    def _camera_size(self, camera: CameraChannel) -> tuple[int, int] | None:
        """(height, width) of a camera: its last frame's, else its camera info's."""
        if camera.layout is not None:
            return tuple(camera.layout[0][:2])  # type: ignore[return-value]
        info = camera.infos.latest()
        if info is None:
            return None
        width, height = image_size(info)
        return height, width

    def _plan_layout(self, height: int, width: int, encoding: str) -> None:
        """Start the background builds of one camera layout's engines (``engine_plan.planned_options``), once."""
        settings, pipeline = self._settings, self._pipeline
        if settings is None or pipeline is None or pipeline.engine_outputs is None or not pipeline.engine_outputs:
            return
        cameras = sum(1 for c in self._cameras if self._camera_size(c) == (height, width)) or 1
        key = (height, width, encoding, cameras, pipeline.engine_outputs, pipeline.settings)
        if key in self._planned:
            return
        self._planned.add(key)
        for options in pipeline.prepare(engine_plan.planned_options(pipeline, settings, height, width, encoding, cameras)):
            self.get_logger().info(f"preparing the deploy engine for {GraphBuild(options, 0.0).describe()} off the serving thread")

    def _plan_from_camera_info(self, camera: CameraChannel, info: CameraInfo) -> None:
        """A camera info gives the camera's size: prepare its engines for the encoding of its frames, when known
        (a frame seen, or a deploy graph composed for this size before, e.g. by ``build-engine --deploy``)."""
        pipeline = self._pipeline
        if pipeline is None or not pipeline.engine_outputs:
            return
        width, height = image_size(info)
        if camera.layout is not None and tuple(camera.layout[0][:2]) == (height, width):
            self._plan_layout(height, width, camera.layout[1])
            return
        key = ("camera_info", camera.spec.name, height, width, pipeline.engine_outputs, pipeline.settings)
        if key in self._planned:
            return
        self._planned.add(key)
        for encoding in pipeline.graph_files(height, width, pipeline.engine_outputs):
            self._plan_layout(height, width, encoding)
            return

    def _on_graph_built(self, build: GraphBuild) -> None:
        """A background build ended (builder thread): log it, report a failure, wake the serving stage."""
        took = f"{build.seconds or 0.0:.1f} s"
        if build.error:
            self._report(None, "engine_build_failed", f"the deploy engine for {build.describe()} failed after {took}: {build.error}")
        elif build.source == "cache":
            self.get_logger().info(f"deploy engine for {build.describe()}: cache hit, loaded {build.engine} (key {build.key.digest()}) in {took}")
        else:
            o = build.options
            hint = (f"; `mtl-perception build-engine --deploy --camera {o.width}x{o.height} --encoding {o.encoding} --params-file FILE` "
                    "builds it before a mission" if build.source == "built" else "")
            engine = f" {build.engine} (key {build.key.digest()})" if build.key is not None else ""
            self.get_logger().info(f"deploy engine for {build.describe()}: {build.source} in {took}{engine}{hint}")
        with self._arrivals:
            self._arrivals.notify_all()

    def _engine_outputs_text(self) -> str:
        pipeline = self._pipeline
        if pipeline is None:
            return "none"
        return "per subscribed set" if pipeline.engine_outputs is None else ",".join(pipeline.engine_outputs) or "none enabled"

    def _engine_build_text(self) -> str:
        """What the backend is building off the serving thread and since when ('' when nothing)."""
        pipeline = self._pipeline
        now = time.monotonic()
        return "; ".join(f"{b.describe()} since {now - b.started:.0f} s" for b in pipeline.building()) if pipeline is not None else ""

    def _hold(self, item: Inferred, pipeline: FramePipeline) -> None:
        """Keep a camera's newest frame while its layout's first engine builds (a newer frame replaces it)."""
        assert item.pixels is not None
        layout = (*item.pixels[0].shape[:2], item.pixels[1])
        name = item.camera.spec.name
        previous = self._held.get(name)
        if previous is None or previous[0] is not item.frame:
            item.camera.counters.add("waiting_for_engine")
        if pipeline.pending(*layout):
            self._held[name] = (item.frame, layout)  # type: ignore[assignment]
        else:
            self._held.pop(name, None)  # nothing builds for it any more: the next frame tries again

    def _held_ready(self) -> bool:
        pipeline = self._pipeline
        return any(pipeline is None or not pipeline.pending(*layout) for _, layout in list(self._held.values()))

    def _take_held(self, camera: CameraChannel) -> Frame | None:
        held = self._held.get(camera.spec.name)
        pipeline = self._pipeline
        if held is None or (pipeline is not None and pipeline.pending(*held[1])):
            return None
        self._held.pop(camera.spec.name, None)
        return held[0]

    def _publish_class_table(self) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        meta = pipeline.metadata
        table = String(data=class_table_json(list(meta.class_names), pipeline.palette_rgb, meta.ignore_index, self._model_sha256))
        for camera in self._cameras:
            if camera.class_publisher is not None:
                camera.class_publisher.publish(table)

    # ------------------------------------------------------------------ parameters
    def _check_parameter_change(self, changes: list[rclpy.parameter.Parameter]) -> SetParametersResult:
        """Accept or refuse a change (never raises into rclpy); the accepted settings wait for the post-set callback
        (on Humble, which has none, they are applied here: rclpy stores the values whenever this callback accepts)."""
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
        if self._apply_on_set:
            self._apply_parameter_change(changes)
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
                self._plan_engines()  # engine outputs: a newly enabled output's engine builds off the serving thread
                if any(change.name == "palette.override" for change in changes):
                    self._publish_class_table()
        except Exception as exc:  # checked before: should not happen; never take the node down for it
            self.get_logger().error(f"could not apply {[c.name for c in changes]}: {type(exc).__name__}: {exc}")
        with self._arrivals:  # a new processing.max_rate_hz takes effect now, not after the wait already begun
            self._arrivals.notify_all()
        self.get_logger().info("parameters changed: " + ", ".join(f"{c.name}={str(c.value)[:80]!r}" for c in changes))

    # ------------------------------------------------------------------ inputs
    def _on_image(self, camera: CameraChannel, msg: Image | CompressedImage) -> None:
        camera.input_rate.tick()
        camera.slot.put(Frame(msg, time.monotonic(), compressed=camera.spec.compressed))
        with self._arrivals:
            self._arrivals.notify_all()

    def _on_camera_info(self, camera: CameraChannel, msg: CameraInfo) -> None:
        try:
            validate_camera_info(msg)
        except CameraInfoError as exc:
            camera.infos.clear()
            self._report(camera, "bad_camera_info", f"{exc} (topic '{self.resolve_topic_name(camera.spec.camera_info_topic)}'); points and depth/camera_info paused")
            return
        camera.infos.add(msg)
        self._plan_from_camera_info(camera, msg)

    # ------------------------------------------------------------------ stage 1: gather + decode + deploy graph
    def _wait_for_rate(self, last_start: float) -> bool:
        """Hold frames back to processing.max_rate_hz (re-read while waiting); True once the node stops."""
        while self._running:
            settings = self._settings
            rate = settings.max_rate_hz if settings is not None else 0.0
            remaining = last_start + 1.0 / rate - time.monotonic() if rate > 0 else 0.0
            if remaining <= 0:
                return False
            with self._arrivals:
                if self._running:
                    self._arrivals.wait(min(remaining, RATE_WAIT_SLICE_S))
        return True

    def _gather(self) -> list[tuple[CameraChannel, Frame]]:
        """The newest frame of every camera that has one, after waiting up to processing.batch_wait_ms for the
        other live cameras (those that sent a frame in the last second); never waits on a silent camera."""
        settings = self._settings
        with self._arrivals:
            if not self._arrivals.wait_for(lambda: not self._running or any(c.slot.has_frame for c in self._cameras) or self._held_ready(), 0.5) or not self._running:
                return []
            if len(self._cameras) > 1 and settings is not None and settings.batch_wait_ms > 0:
                now = time.monotonic()
                live = [c for c in self._cameras if (c.input_rate.last() or -1e9) > now - LIVE_CAMERA_S]
                self._arrivals.wait_for(lambda: not self._running or all(c.slot.has_frame for c in live), settings.batch_wait_ms / 1e3)
        frames = []
        for camera in self._cameras:
            frame = camera.slot.take(timeout=0)
            if frame is not None:
                self._held.pop(camera.spec.name, None)  # a newer frame wins over one waiting for its engine
            else:
                frame = self._take_held(camera)
            if frame is not None:
                frames.append((camera, frame))
        return frames

    def _run_inference_stage(self) -> None:
        last_start = -1e9
        while self._running:
            if self._wait_for_rate(last_start):
                return
            frames = self._gather()
            if not frames:
                continue
            last_start = time.monotonic()
            try:
                inferred = self._infer_frames(frames)
                if inferred:
                    replaced = self._publish_slot.put(inferred)
                    for item in replaced or ():
                        item.camera.dropped_before_publishing += 1
            except Exception as exc:  # last line of defence: the stage never dies
                for camera, _ in frames:
                    self._count_failure(camera)
                self._report(None, "internal_error", f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _infer_frames(self, frames: list[tuple[CameraChannel, Frame]]) -> list[Inferred]:
        """decode (a view of each camera's bytes) -> one deploy graph call per camera layout, for the outputs someone wants."""
        settings, pipeline = self._settings, self._pipeline
        if settings is None or pipeline is None:
            return []
        ready: dict[tuple[Any, ...], list[Inferred]] = {}
        for camera, frame in frames:
            info, matched = camera.infos.match(frame.msg.header.stamp, settings.camera_info_tolerance_s)
            if info is not None and not matched:
                camera.counters.add("camera_info_unmatched")
            subscribers = {key: pub.get_subscription_count() for key, pub in camera.publishers.items()}
            wanted = wanted_outputs(settings.outputs, subscribers, list(pipeline.metadata.tasks), info is not None)
            if not wanted:
                camera.counters.add("skipped_no_subscribers")
                continue
            times = {"start": time.perf_counter()}
            pixels = self._decode(camera, frame, settings, graph_outputs(wanted))
            if pixels is None:
                continue
            times["decode"] = time.perf_counter()
            item = Inferred(camera, frame, None, wanted, times, pixels, info)
            if camera.layout != (pixels[0].shape, pixels[1]):  # a camera's first frame, or a new size or encoding
                camera.layout = (pixels[0].shape, pixels[1])
                self._plan_layout(*pixels[0].shape[:2], pixels[1])
            ready.setdefault(camera.layout, []).append(item)
        done: list[Inferred] = []
        for layout, group in ready.items():
            capacity = min(settings.max_batch, sum(1 for camera in self._cameras if camera.layout == layout))
            for start in range(0, len(group), settings.max_batch):
                done += self._run_graph(group[start : start + settings.max_batch], capacity)
        return done

    def _decode(self, camera: CameraChannel, frame: Frame, settings: params.Settings, outputs: set[str]) -> tuple[np.ndarray, str] | None:
        """(pixels as the graph takes them, encoding) of the frame, or None after reporting why it cannot be read or why
        computing ``outputs`` (deploy graph outputs) for it would exceed processing.memory_budget_mb."""
        try:
            if frame.compressed:
                pixels, encoding = compressed_msg_to_array(frame.msg, settings.max_pixels)
            else:
                pixels, encoding = image_msg_to_array(frame.msg, settings.max_pixels, copy=False), frame.msg.encoding
            meta = self._pipeline.metadata if self._pipeline is not None else None
            model_pixels = meta.input_height * meta.input_width if meta is not None and settings.resolution == "model" else None
            check_frame(*pixels.shape[:2], outputs, settings.memory_budget_mb, model_pixels, settings.points_stride)
            return graph_input(pixels, encoding)
        except (ImageDecodeError, ValueError) as exc:
            self._reject_frame(camera, exc)
            return None

    def _reject_frame(self, camera: CameraChannel, exc: Exception) -> None:
        self._count_failure(camera)
        self._report(camera, "bad_input", f"frame on '{self.resolve_topic_name(camera.spec.input_topic)}' rejected: {exc}")

    def _run_graph(self, batch: list[Inferred], capacity: int) -> list[Inferred]:
        """One deploy graph call for frames of one camera layout (``capacity``: how many cameras have that layout,
        at most processing.max_batch; see ``graph_batch_sizes``); the frames with their buffers (none after a failure)."""
        names = graph_outputs(set().union(*(item.wanted for item in batch)))
        for _attempt in range(2):
            with self._pipeline_lock:
                pipeline = self._pipeline
            if pipeline is None:
                return []
            started = time.perf_counter()
            try:
                results = self._run_batch(pipeline, batch, names, capacity)
                self._backend_error = None
            except GraphPending:  # the layout's first engine is building off this thread: its frames wait for it
                for item in batch:
                    self._hold(item, pipeline)
                return []
            except ModelFileError as exc:  # a model or deploy graph file the backend cannot load: the backend's fault, never the frames'
                if self._backend_failed(batch, exc):
                    continue
                return []
            except (ValueError, ImageDecodeError) as exc:  # the frames themselves: not the backend's fault
                for item in batch:
                    self._reject_frame(item.camera, exc)
                return []
            except Exception as exc:
                if self._backend_failed(batch, exc):
                    continue
                return []
            finished = time.perf_counter()
            self._graph_busy_s += finished - started
            self._batch_sizes[len(batch)] += 1
            self._padding_frames += graph_batch_size(len(batch), capacity) - len(batch)
            for item, result in zip(batch, results):
                item.result = result
                item.times["graph"] = finished
                if result.geometry is None:
                    item.wanted -= {"points", "depth_camera_info"}
            return batch
        return []

    def _backend_failed(self, batch: list[Inferred], exc: Exception) -> bool:
        """The backend failed on ``batch``: True when the fallback took over (run it again there), else counted and reported."""
        if self._fall_back(exc):
            return True
        self._backend_error = f"{type(exc).__name__}: {exc}"
        for item in batch:
            self._count_failure(item.camera)
        self._report(None, "inference_error", f"inference failed on {self._backend_kind}: {exc}")
        return False

    def _run_batch(self, pipeline: FramePipeline, batch: list[Inferred], names: set[str], capacity: int) -> list[FrameOutputs]:
        """pipeline.run_batch, with the camera info of a camera whose info describes another size left out (and reported)."""
        frames = []
        for item in batch:
            info = item.info
            if info is not None:
                try:
                    pipeline.check_camera_info(info, *item.pixels[0].shape[:2])
                except CameraInfoMismatch as exc:
                    self._report(item.camera, "camera_info_mismatch", str(exc))
                    info = None
            frames.append((item.pixels[0], item.pixels[1], info))
        return pipeline.run_batch(frames, names, capacity)

    # ------------------------------------------------------------------ stage 2: messages + publish
    def _run_publish_stage(self) -> None:
        while not self._publish_slot.closed:
            batch = self._publish_slot.take(timeout=0.5)
            if batch is None:
                continue
            for inferred in batch:
                try:
                    self._publish(inferred)
                except Exception as exc:  # last line of defence: the stage never dies
                    self._count_failure(inferred.camera)
                    self._report(inferred.camera, "internal_error", f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _publish(self, inferred: Inferred) -> None:
        settings = self._settings
        if settings is None or inferred.result is None:
            return
        times = inferred.times
        times["handoff"] = time.perf_counter()
        messages = build_messages(inferred.wanted, inferred.result, inferred.frame.msg.header, settings.points_organized)
        times["messages"] = time.perf_counter()
        publishers = inferred.camera.publishers
        for key, msg in messages.items():
            publisher = publishers.get(key)
            if publisher is not None:
                publisher.publish(msg)
        times["publish"] = time.perf_counter()
        self._record(inferred.camera, times, inferred.frame)
        if self._trims_due > 0:  # after an unusually large frame: both stages, then the output histories let go of its buffers
            self._trims_due -= 1
            release_freed_memory()  # give the heap pages they took back to the system
        if inferred.pixels is not None and inferred.pixels[0].shape[0] * inferred.pixels[0].shape[1] > LARGE_FRAME_PIXELS:
            self._trims_due = settings.output_qos_depth + 1  # its messages leave the keep-last output histories by then

    def _record(self, camera: CameraChannel, times: dict[str, float], frame: Frame) -> None:
        """Stage latencies and counters of one published frame (the hand-off wait is not a stage)."""
        camera.latency.add("decode", times["decode"] - times["start"])
        camera.latency.add("graph", times["graph"] - times["decode"])
        camera.latency.add("messages", times["messages"] - times["handoff"])
        camera.latency.add("publish", times["publish"] - times["messages"])
        camera.latency.add("total", time.monotonic() - frame.received)
        camera.counters.add("processed")
        camera.output_rate.tick()

    def _count_failure(self, camera: CameraChannel) -> None:
        camera.counters.add("failed")

    def _report(self, camera: CameraChannel | None, kind: str, text: str) -> None:
        """Count a problem of a camera (None: of the shared backend), keep it for diagnostics, log it at most once per LOG_THROTTLE_S per kind."""
        counters = camera.counters if camera is not None else self._backend_counters
        counters.problem(kind, text)
        now = time.monotonic()
        key = f"{camera.spec.name if camera is not None else ''}/{kind}"
        if now - self._last_log.get(key, -1e9) >= LOG_THROTTLE_S:
            self._last_log[key] = now
            where = f"[{camera.spec.name}] " if camera is not None and camera.spec.name else ""
            self.get_logger().warning(f"{where}{text} [{kind} #{counters.get(kind)}; repeats of this kind are logged at most every {LOG_THROTTLE_S:.0f} s]")

    # ------------------------------------------------------------------ diagnostics
    def diagnostics_values(self, camera: CameraChannel | None = None) -> dict[str, Any]:
        """The figures the diagnostics report for one camera (default: the first), with the shared backend's."""
        camera = camera or (self._cameras[0] if self._cameras else None)
        counts = camera.counters.snapshot() if camera is not None else {}
        backend = self._backend_counters.snapshot()
        received = camera.slot.received if camera is not None else 0
        dropped_inference = camera.slot.dropped if camera is not None else 0
        dropped_publishing = camera.dropped_before_publishing if camera is not None else 0
        values: dict[str, Any] = {
            "state": self._state,
            "camera": camera.spec.label if camera is not None else "",
            "input_topic": self.resolve_topic_name(camera.spec.input_topic) if camera is not None else "",
            "input_rate_hz": camera.input_rate.rate() if camera is not None else 0.0,
            "output_rate_hz": camera.output_rate.rate() if camera is not None else 0.0,
            "frames_received": received,
            "frames_processed": counts.get("processed", 0),
            "frames_dropped": dropped_inference + dropped_publishing,
            "frames_dropped_before_inference": dropped_inference,
            "frames_dropped_before_publishing": dropped_publishing,
            "frames_failed": counts.get("failed", 0),
            "frames_skipped_no_subscribers": counts.get("skipped_no_subscribers", 0),
            "frames_waiting_for_engine": counts.get("waiting_for_engine", 0),
            "bad_input": counts.get("bad_input", 0),
            "bad_camera_info": counts.get("bad_camera_info", 0),
            "camera_info_mismatch": counts.get("camera_info_mismatch", 0),
            "camera_info_unmatched": counts.get("camera_info_unmatched", 0),
            "inference_errors": backend.get("inference_error", 0),
            "backend_fallbacks": backend.get("backend_fallbacks", 0),
            "cache_files_rebuilt": self._cache_repairs.count(),
            "backend": self._backend_kind or "none",
            "model": str(self._model_path or ""),
            "model_sha256": self._model_sha256,
            "graphs_built": self._pipeline.graphs_built if self._pipeline is not None else 0,
            "engine_outputs": self._engine_outputs_text(),
            "engine_building": self._engine_build_text() or "none",
        }
        if camera is not None:
            values.update(latency_values(camera.latency.summary()))
        return values

    def backend_values(self, period_s: float) -> dict[str, Any]:
        """The shared backend's figures: batch-size histogram and the share of the period spent in the graph."""
        return {
            "backend": self._backend_kind or "none",
            "cameras": len(self._cameras),
            "batch_sizes": " ".join(f"{size}:{count}" for size, count in sorted(self._batch_sizes.items())) or "none",
            "graph_utilisation": min(1.0, self._graph_busy_s / period_s) if period_s > 0 else 0.0,
            "padding_frames": self._padding_frames,
            "graphs_built": self._pipeline.graphs_built if self._pipeline is not None else 0,
            "engine_building": self._engine_build_text() or "none",
            "inference_errors": self._backend_counters.get("inference_error"),
            "backend_fallbacks": self._backend_counters.get("backend_fallbacks"),
            "cache_files_rebuilt": self._cache_repairs.count(),
            "model_sha256": self._model_sha256,
        }

    def _camera_health(self, camera: CameraChannel, now: float, backend_problems: dict[str, str]) -> Health:
        last_input = camera.input_rate.last()
        counts = camera.counters.snapshot()
        in_period = {name: counts.get(name, 0) - camera.counts_at_last_tick.get(name, 0) for name in ("processed", "failed")}
        camera.counts_at_last_tick = counts
        return Health(
            state=self._state,
            seconds_since_input=None if last_input is None or last_input < self._activated_at else now - last_input,
            seconds_active=now - self._activated_at if self._state == "active" else 0.0,
            stall_timeout_s=self._settings.stall_timeout_s if self._settings else 2.0,
            input_topic=self.resolve_topic_name(camera.spec.input_topic),
            processed_in_period=in_period["processed"],
            failed_in_period=in_period["failed"],
            problems={**camera.counters.recent_problems(self._last_tick), **backend_problems},
            backend_error=self._backend_error,
            building=self._engine_build_text(),
        )

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        period = now - self._last_tick
        for repair in self._cache_repairs.new():  # logged once where it was found; WARN on /diagnostics for this period
            self._backend_counters.problem(CACHE_FILE_REBUILT, repair)
        backend_problems = self._backend_counters.recent_problems(self._last_tick)
        statuses = []
        for camera in self._cameras:
            level, message = assess(self._camera_health(camera, now, backend_problems))
            name = f"{self.get_name()}: perception" if not camera.spec.name else f"{self.get_name()}: camera {camera.spec.name}"
            statuses.append(make_status(name, self.get_fully_qualified_name(), level, message, self.diagnostics_values(camera)))
        if len(self._cameras) > 1:
            level = max((status.level[0] for status in statuses), default=0)
            statuses.insert(0, make_status(f"{self.get_name()}: perception", self.get_fully_qualified_name(), level,
                                           f"{len(self._cameras)} cameras on one {self._backend_kind or 'unloaded'} backend",
                                           self.backend_values(period)))
        self._last_tick = now
        self._graph_busy_s = 0.0
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = statuses
        if self._diag_pub is not None:
            self._diag_pub.publish(array)


WAKE_PERIOD_S = 0.5  # the longest the executor of `perception_node` waits before it looks at the context again


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
        # not executor.spin(): a signal's wake-up of a waiting executor can be lost (seen under CI with
        # autostart:=false, where no timer wakes it: SIGINT went unanswered for 30 s); bounded waits see the
        # shut-down context within WAKE_PERIOD_S whatever happens to that wake-up
        while rclpy.ok(context=node.context):
            executor.spin_once(timeout_sec=WAKE_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - a signal that shuts the context down while the executor builds its wait set
        if rclpy.ok():  # surfaces as an RCLError ("the given context is not valid"): that is a shutdown too
            raise
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
