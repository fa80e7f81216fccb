"""``perception_node``: cameras in; depth, semantics, normals and a point cloud out (an rclpy lifecycle node).

Lifecycle: configure reads and validates the parameters and creates the publishers; activate loads the
model through the backend contract, subscribes and starts the two stages; deactivate unsubscribes,
stops them and frees the model; cleanup destroys the publishers; shutdown does whatever of those is left.
The state is rclpy's own lifecycle state (``lifecycle_state``).

One camera (``input.*`` topics, outputs under the node's namespace) or several (``cameras``, outputs under
each camera's namespace: ``ros/camera_channel.py``), always one model and one backend in memory.

This module keeps the ROS side: lifecycle, parameters (checked in the on-set callback, applied in the post-set
one, or on Humble from the on-set one), subscriptions and publishers. The rest is plain Python: the two
pipelined stages (latest frame wins, batching by camera layout, retry after a fallback: ``ros/stages.py``),
the model in service (loading, fallback backend, TensorRT engines built off the serving thread:
``ros/serving.py``) and the /diagnostics statuses (``ros/diagnostics.py``).

Engines before frames: on a backend that compiles TensorRT engines (``engine_plan.builds_engines``) the
graphs are built for the outputs the parameters *enable*, off the serving thread, as soon as a camera's
size is known (its camera info, when a deploy graph for that size was prepared before, e.g. by
``mtl-perception build-engine --deploy``; else its first frame); every subscriber subset is served from
that engine. Enabling an output at run time builds the new engine in the background while the current
one serves; /diagnostics says what is building and since when. On ONNX Runtime and torch a graph is built
per subscribed output set on the serving thread (under a second there; a graph cut to what is subscribed
runs 2-5x faster).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from mtl_perception.colorize import class_table_json
from mtl_perception.inference.camera_info import CameraInfoError, validate_camera_info
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
from mtl_perception.ros.diagnostics import Diagnostics, NodeView, ProblemLog
from mtl_perception.ros.frame_slot import Frame
from mtl_perception.ros.outputs import build_messages
from mtl_perception.ros.serving import ModelService, check_palette
from mtl_perception.ros.stages import Inferred, Stages

NODE_NAME = "perception_node"
DIAGNOSTICS_PERIOD_S = 1.0
MAX_REASON_CHARS = 500  # longest refusal reason returned to `ros2 param set`
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


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last ``depth`` volatile QoS with the named reliability."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy, durability=DurabilityPolicy.VOLATILE)


class TopicOutputs:
    """The stages' ``Outputs`` on the node's topics: subscriber counts, messages with the frame's header, publishing."""

    def __init__(self, resolve: Callable[[str], str], settings: Callable[[], params.Settings | None]) -> None:
        self._resolve = resolve
        self._settings = settings

    def subscribers(self, camera: CameraChannel) -> dict[str, int]:
        return {key: publisher.get_subscription_count() for key, publisher in camera.publishers.items()}

    def input_topic(self, camera: CameraChannel) -> str:
        return self._resolve(camera.spec.input_topic)

    def messages(self, item: Inferred) -> dict[str, Any]:
        settings = self._settings()
        assert item.result is not None and settings is not None
        return build_messages(item.wanted, item.result, item.frame.msg.header, settings.points_organized)

    def publish(self, camera: CameraChannel, messages: dict[str, Any]) -> None:
        for key, msg in messages.items():
            publisher = camera.publishers.get(key)
            if publisher is not None:
                publisher.publish(msg)


class PerceptionNode(LifecycleNode):
    """The multi-task perception lifecycle node (see the module docstring).

    Its parts are public for tools and tests: ``cameras`` (each with its slot, publishers and figures), ``backend``
    (the model in service) and ``stages`` (the two stage threads).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare_all(self)
        self._camera_names = self._declare_cameras()
        self._settings: params.Settings | None = None
        self._pending_settings: params.Settings | None = None
        self.cameras: list[CameraChannel] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._subscriptions_active: list[Any] = []
        self._problems = ProblemLog(self.get_logger().warning)
        self._diagnostics = Diagnostics(self._problems)
        self.backend = ModelService(lambda: self._settings, lambda: self.cameras, self._problems, self.get_logger(), lambda: self.stages.wake())
        self.stages = Stages(lambda: self._settings, self.backend, TopicOutputs(self.resolve_topic_name, lambda: self._settings), self._problems)
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
        self.cameras = [CameraChannel(spec, self.stages.arrivals) for spec in specs]
        for camera in self.cameras:
            for key, topic in params.OUTPUT_TOPICS.items():
                camera.publishers[key] = self.create_lifecycle_publisher(OUTPUT_TYPES[key], camera.spec.output_topic(topic), out_qos)
            camera.class_publisher = self.create_lifecycle_publisher(String, camera.spec.output_topic(params.CLASS_TABLE_TOPIC), latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        inputs = ", ".join(f"'{self.resolve_topic_name(c.spec.input_topic)}'" for c in self.cameras)
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
            self.backend.load(settings)
        except Exception as exc:  # any load failure: stay inactive and say why
            self.backend.error = str(exc)
            self.backend.free()
            self.get_logger().error(f"activate failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        in_qos = make_qos(settings.reliability, settings.qos_depth)
        for camera in self.cameras:
            spec = camera.spec
            kind = CompressedImage if spec.compressed else Image
            self._subscriptions_active.append(self.create_subscription(kind, spec.input_topic, lambda msg, c=camera: self._on_image(c, msg), in_qos))
            self._subscriptions_active.append(self.create_subscription(CameraInfo, spec.camera_info_topic, lambda msg, c=camera: self._on_camera_info(c, msg), in_qos))
        self.stages.start(self.cameras)
        result = super().on_activate(state)
        self._publish_class_table()
        self.get_logger().info(f"active: {self.backend.kind} backend, model {self.backend.model_path} (sha256 {self.backend.model_sha256[:12]}), {len(self.cameras)} camera(s)")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("deactivated: unsubscribed and freed the model")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error during a transition from '{state.label}'; releasing everything and returning to unconfigured")
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop processing and destroy every resource (safe to call in any state, more than once)."""
        self._stop_processing()
        self._destroy_outputs()

    def _stop_processing(self) -> None:
        for subscription in self._subscriptions_active:
            self.destroy_subscription(subscription)
        self._subscriptions_active = []
        for name in self.stages.stop():
            self.get_logger().error(f"{name} thread did not stop within 30 s (inference stuck?)")
        self.backend.free()
        for camera in self.cameras:
            camera.infos.clear()

    def _destroy_outputs(self) -> None:
        for camera in self.cameras:
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
        """rclpy's lifecycle state: unconfigured | inactive | active | finalized (or the transition under way, e.g. activating)."""
        return self._state_machine.current_state[1]

    def _publish_class_table(self) -> None:
        pipeline = self.backend.pipeline
        if pipeline is None:
            return
        meta = pipeline.metadata
        table = String(data=class_table_json(list(meta.class_names), pipeline.palette_rgb, meta.ignore_index, self.backend.model_sha256))
        for camera in self.cameras:
            if camera.class_publisher is not None:
                camera.class_publisher.publish(table)

    # ------------------------------------------------------------------ parameters
    def _check_parameter_change(self, changes: list[rclpy.parameter.Parameter]) -> SetParametersResult:
        """Accept or refuse a change (never raises into rclpy); the accepted settings wait for the post-set callback
        (on Humble, which has none, they are applied here: rclpy stores the values whenever this callback accepts)."""
        try:
            values = params.read_values(self)
            configured = self.lifecycle_state in ("inactive", "active")
            for change in changes:
                reason = params.change_rejection(change.name, configured)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                values[change.name] = change.value
            settings = params.settings_from_values(values, self._settings)
            pipeline = self.backend.pipeline
            if pipeline is not None:
                meta = pipeline.metadata
                params.depth_range(settings, meta.depth_min, meta.depth_max)
                check_palette(settings, meta)
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
        pipeline = self.backend.pipeline
        try:
            if pipeline is not None:
                pipeline.configure(params.frame_settings(settings))  # runtime inputs: no graph rebuild
                self.backend.plan_engines()  # engine outputs: a newly enabled output's engine builds off the serving thread
                if any(change.name == "palette.override" for change in changes):
                    self._publish_class_table()
        except Exception as exc:  # checked before: should not happen; never take the node down for it
            self.get_logger().error(f"could not apply {[c.name for c in changes]}: {type(exc).__name__}: {exc}")
        self.stages.wake()  # a new processing.max_rate_hz takes effect now, not after the wait already begun
        self.get_logger().info("parameters changed: " + ", ".join(f"{c.name}={str(c.value)[:80]!r}" for c in changes))

    # ------------------------------------------------------------------ inputs
    def _on_image(self, camera: CameraChannel, msg: Image | CompressedImage) -> None:
        camera.input_rate.tick()
        camera.slot.put(Frame(msg, time.monotonic(), compressed=camera.spec.compressed))  # wakes stage 1 (stages.arrivals)

    def _on_camera_info(self, camera: CameraChannel, msg: CameraInfo) -> None:
        try:
            validate_camera_info(msg)
        except CameraInfoError as exc:
            camera.infos.clear()
            self._problems.report(camera, "bad_camera_info", f"{exc} (topic '{self.resolve_topic_name(camera.spec.camera_info_topic)}'); points and depth/camera_info paused")
            return
        camera.infos.add(msg)
        self.backend.plan_from_camera_info(camera, msg)

    # ------------------------------------------------------------------ diagnostics
    def _view(self, new_period: bool = False) -> NodeView:
        settings = self._settings
        return NodeView(self.get_name(), self.get_fully_qualified_name(), self.lifecycle_state, self.cameras,
                        {c.spec.name: self.resolve_topic_name(c.spec.input_topic) for c in self.cameras},
                        self.backend.figures(), self.stages.figures(new_period), settings.stall_timeout_s if settings else 2.0)

    def diagnostics_values(self, camera: CameraChannel | None = None) -> dict[str, Any]:
        """The figures the diagnostics report for one camera (default: the first), with the shared backend's."""
        return self._diagnostics.camera_values(self._view(), camera or (self.cameras[0] if self.cameras else None))

    def backend_values(self, period_s: float) -> dict[str, Any]:
        """The shared backend's figures: batch-size histogram and the share of the period spent in the graph."""
        return self._diagnostics.backend_values(self._view(), period_s)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.status = self._diagnostics.tick(self._view(new_period=True))
        array.header.stamp = self.get_clock().now().to_msg()
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
