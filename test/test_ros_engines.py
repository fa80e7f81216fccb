"""Engines before frames: the node on a TensorRT backend (the stand-ins ``trt_double.py`` + ``cuda_double.py``,
which parse, build and run the deploy graph in ONNX Runtime) in a real in-process ROS graph.

- ``build-engine --deploy`` with the node's parameter file builds the engine the node then loads: the same
  cache key, a cache hit logged on /rosout, prepared from the camera info before the first frame;
- a new subscriber subset is served from that engine without a build (graphs_built unchanged);
- an output enabled at run time builds in the background while frames keep being served, /diagnostics says
  so, and the output follows once it is built.
Every wait is on a message, a log line or an event of the (gated) build.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (the CUDA stand-in is built from it) is not installed")

from cuda_double import FakeCudart, install  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_fixtures import Collector, RosGraph, pinhole_info, ros_graph  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from test_inference_engine_outputs import Gate  # noqa: E402
from trt_double import FakeTensorRT, program_onnx_engines, table_versions  # noqa: E402

from mtl_perception.cli import main as cli_main  # noqa: E402
from mtl_perception.inference.backends import tensorrt_backend  # noqa: E402
from mtl_perception.inference.image_codec import array_to_image_msg  # noqa: E402
from mtl_perception.paths import CACHE_ENV  # noqa: E402
from mtl_perception.ros import engine_plan  # noqa: E402
from mtl_perception.ros.node import PerceptionNode  # noqa: E402

RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
HEIGHT, WIDTH = 96, 128

graph = ros_graph(offset=43)


@pytest.fixture
def tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeTensorRT:
    """The TensorRT and CUDA stand-ins as ``tensorrt`` and ``cuda.bindings.runtime``, a private precision cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "precision"))
    monkeypatch.setattr(tensorrt_backend, "_LOGGERS", {})
    cudart = install(monkeypatch, FakeCudart())
    trt = program_onnx_engines(FakeTensorRT(table_versions()[-1]), cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def params_file(folder: Path, model: Path, **outputs: bool) -> Path:
    lines = ["/**:", "  ros__parameters:", "    autostart: false", f"    model: {{path: '{model}', backend: tensorrt, precision: fp32, "
             f"engine_cache_dir: '{folder / 'engines'}', fallback_backend: ''}}",
             "    qos: {reliability: reliable, depth: 5}", "    points: {stride: 2}"]
    if outputs:
        lines.append("    output: {" + ", ".join(f"{key}: {str(on).lower()}" for key, on in outputs.items()) + "}")
    path = folder / "node.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(graph: RosGraph, name: str, params: Path, namespace: str) -> PerceptionNode:
    return graph.start_perception(name, namespace, cli_args=["--ros-args", "--params-file", str(params)])


def frame(stamp: int) -> Image:
    pixels = np.random.default_rng(stamp).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = array_to_image_msg(pixels, "rgb8")
    msg.header.stamp.sec, msg.header.frame_id = stamp, "cam_optical"
    return msg


def camera_info() -> CameraInfo:
    return pinhole_info(WIDTH, HEIGHT, 110.0, "cam_optical")


def stamped(collector: Collector, stamp: int, timeout: float = 30.0) -> bool:
    return collector.wait_for(lambda msgs: any(m.header.stamp.sec == stamp for m in msgs), timeout)


def test_build_engine_deploy_makes_the_engine_the_node_loads(graph: RosGraph, tensorrt: FakeTensorRT, tiny_model: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = params_file(tmp_path, tiny_model, normals=False, semantic_overlay=False)
    settings, cameras = engine_plan.settings_from_file(params)
    assert cli_main(["build-engine", "--deploy", "--camera", f"{WIDTH}x{HEIGHT}", "--encoding", "rgb8", "--params-file", str(params)]) == 0
    printed = capsys.readouterr().out
    assert "engine built" in printed and "semantic_overlay" not in printed.splitlines()[0], printed
    cli_key = printed.split(", key ")[-1].split()[0]
    assert cli_main(["build-engine", "--deploy", "--camera", f"{WIDTH}x{HEIGHT}", "--params-file", str(params)]) == 0
    assert "found in cache (not rebuilt)" in capsys.readouterr().out and f"key {cli_key}" in printed
    builds_before = len(tensorrt.record.calls_to("Builder", "build_serialized_network"))
    assert builds_before == 1

    logs = graph.collect(Log, "/rosout", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node = start(graph, "prepared", params, "/prepared")
    depth = graph.collect(Image, "/prepared/depth", RELIABLE)
    info_pub = graph.helper.create_publisher(CameraInfo, "/prepared/camera_info", RELIABLE)
    image_pub = graph.helper.create_publisher(Image, "/prepared/image", RELIABLE)
    try:
        assert node.diagnostics_values()["engine_outputs"] == "depth,depth_color,labels,points,semantic_color"
        info_pub.publish(camera_info())  # the size, and a deploy graph composed for it: the engine loads before any frame
        assert logs.wait_for(lambda msgs: any("cache hit" in m.msg and m.name.endswith("prepared") for m in msgs), 30)
        (build,) = node.backend.pipeline.builds
        assert build.source == "cache" and build.key.digest() == cli_key
        planned = engine_plan.planned_options(node.backend.pipeline, settings, HEIGHT, WIDTH, "rgb8", cameras)
        assert [build.options] == planned, "the node and the command plan one and the same graph"
        image_pub.publish(frame(7))
        assert stamped(depth, 7)
        assert node.backend.pipeline.graphs_built == 1 and len(tensorrt.record.calls_to("Builder", "build_serialized_network")) == builds_before, \
            "the node built nothing: the command's engine served"
    finally:
        graph.helper.destroy_publisher(info_pub)
        graph.helper.destroy_publisher(image_pub)
        graph.stop_perception(node)


def test_new_subscribers_are_served_from_the_engine_and_a_newly_enabled_output_builds_meanwhile(
        graph: RosGraph, tensorrt: FakeTensorRT, tiny_model: Path, tmp_path: Path) -> None:
    node = start(graph, "engines", params_file(tmp_path, tiny_model, normals=False), "/engines")
    image_pub = graph.helper.create_publisher(Image, "/engines/image", RELIABLE)
    info_pub = graph.helper.create_publisher(CameraInfo, "/engines/camera_info", RELIABLE)
    depth = graph.collect(Image, "/engines/depth", RELIABLE)
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", RELIABLE)
    logs = graph.collect(Log, "/rosout", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    try:
        info_pub.publish(camera_info())
        image_pub.publish(frame(1))  # the first frame waits (held) for the layout's first engine, then is served
        assert stamped(depth, 1)
        assert node.backend.pipeline.graphs_built == 1 and node.diagnostics_values()["frames_waiting_for_engine"] == 1

        semantic = graph.collect(Image, "/engines/semantic/color", RELIABLE)  # RViz opens: another subscriber subset
        points = graph.collect(PointCloud2, "/engines/points", RELIABLE)
        image_pub.publish(frame(2))
        assert stamped(semantic, 2) and stamped(points, 2) and stamped(depth, 2)
        assert node.backend.pipeline.graphs_built == 1, "a new subscriber subset needs no new engine"

        normals = graph.collect(Image, "/engines/normals", RELIABLE)
        gate = Gate(node.backend.pipeline._create_backend)
        node.backend.pipeline._create_backend = gate
        assert node.set_parameters([Parameter("output.normals", value=True)])[0].successful
        assert gate.started.wait(30), "enabling normals starts the new engine's build"
        building = node.diagnostics_values()["engine_building"]
        assert "normals" in building and f"{WIDTH}x{HEIGHT} rgb8" in building
        assert diagnostics.wait_for(lambda msgs: any("building deploy engine" in s.message and "normals" in s.message
                                                     for m in msgs for s in m.status), 10)
        for stamp in (3, 4):  # frames keep being served by the engine in service while the other builds
            image_pub.publish(frame(stamp))
            assert stamped(depth, stamp) and stamped(semantic, stamp)
        assert normals.messages == [] and node.backend.pipeline.graphs_built == 1
        gate.release.set()
        assert logs.wait_for(lambda msgs: any(": built in" in m.msg and "normals" in m.msg and m.name.endswith("engines") for m in msgs), 30)
        image_pub.publish(frame(5))
        assert stamped(normals, 5) and stamped(depth, 5)
        assert node.backend.pipeline.graphs_built == 2 and gate.calls == 1
        assert node.diagnostics_values()["engine_building"] == "none"
    finally:
        graph.helper.destroy_publisher(image_pub)
        graph.helper.destroy_publisher(info_pub)
        graph.stop_perception(node)


def test_the_plan_follows_the_parameter_file(tiny_model: Path, tmp_path: Path) -> None:
    params = params_file(tmp_path, tiny_model, normals=False, points=False, depth_camera_info=False)
    settings, cameras = engine_plan.settings_from_file(params)
    assert (settings.backend, settings.precision, settings.points_stride, cameras) == ("tensorrt", "fp32", 2, 1)
    assert engine_plan.engine_outputs(settings.outputs, ["depth", "semantic"]) == ("depth", "depth_color", "labels", "semantic_color", "semantic_overlay")
    assert engine_plan.engine_outputs(settings.outputs, ["depth"]) == ("depth", "depth_color")
    assert engine_plan.builds_engines("tensorrt", "auto") and engine_plan.builds_engines("onnxruntime", "tensorrt")
    assert not engine_plan.builds_engines("onnxruntime", "cpu") and not engine_plan.builds_engines("torch", "cuda")
    two = tmp_path / "two.yaml"
    two.write_text(params.read_text() + "    cameras: {names: [front, rear]}\n    processing: {max_batch: 4}\n")
    settings, cameras = engine_plan.settings_from_file(two)
    assert cameras == 2 and engine_plan.engine_batches(settings, cameras) == [1, 2]


def test_build_engine_deploy_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["build-engine", "--deploy", "--encoding", "rgb8"]) == 2
    assert "--deploy needs --camera WIDTHxHEIGHT" in capsys.readouterr().err
    assert cli_main(["build-engine", "--precision", "fp16"]) == 2
    assert "--model is required" in capsys.readouterr().err
    missing = tmp_path / "absent.yaml"
    assert cli_main(["build-engine", "--deploy", "--camera", "64x48", "--params-file", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["build-engine", "--deploy", "--camera", "640"])
    assert "is not WIDTHxHEIGHT" in capsys.readouterr().err


def test_a_build_in_progress_is_a_warning_after_every_problem() -> None:
    from mtl_perception.ros.diagnostics import ERROR, OK, WARN, Health, assess

    def health(**changes: object) -> Health:
        values = dict(state="active", seconds_since_input=0.1, seconds_active=5.0, stall_timeout_s=2.0, input_topic="/image",
                      processed_in_period=3, failed_in_period=0)
        return Health(**{**values, **changes})  # type: ignore[arg-type]

    assert assess(health()) == (OK, "processing")
    level, message = assess(health(building="depth,normals for 640x480 rgb8 batch 1 since 42 s"))
    assert level == WARN and "building deploy engine" in message and "since 42 s" in message
    assert assess(health(building="x", backend_error="no GPU"))[0] == ERROR
    assert "bad_camera_info" in assess(health(building="x", problems={"bad_camera_info": "k is zero"}))[1]
