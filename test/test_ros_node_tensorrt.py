"""perception_node with ``model.backend: tensorrt`` through a real ROS graph, on the TensorRT and CUDA stand-ins.

In-process: a tensorrt node and an onnxruntime node see the same frames; every output message must carry
the same bytes. In node processes of their own (``node_process.py``): the tensorrt node (stand-ins in its
``sys.modules``, default precision) and the onnxruntime node serve frames, and neither process ever
imports torch (JetPack has none; issue 22, 4). JetPack 6.0's TensorRT 8.6 is refused at activation and
the node falls back to onnxruntime (issue 27, 6).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from ros_fixtures import RosGraph, pinhole_info, ros_graph, wait_until

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_node_process import start_process, stop_process  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from cuda_double import REAL_MODULE, FakeCudart  # noqa: E402
from mtl_perception.inference.image_codec import array_to_image_msg  # noqa: E402
from mtl_perception.paths import CACHE_ENV  # noqa: E402
from mtl_perception.inference.sample_images import sample_image  # noqa: E402
from mtl_perception.ros.node import PerceptionNode  # noqa: E402
from trt_double import FakeTensorRT, program_onnx_engines  # noqa: E402

HERE = Path(__file__).resolve().parent
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TOPICS = {"depth": Image, "depth/color": Image, "semantic": Image, "semantic/color": Image, "semantic/overlay": Image,
          "normals": Image, "points": PointCloud2}
HEIGHT, WIDTH = 72, 96
TRT_VERSION = "10.13.0.35"

graph = ros_graph(offset=67)


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Iterator[FakeCudart]:
    """The stand-ins as ``tensorrt`` and ``cuda.bindings.runtime`` in this process, a private precision cache."""
    cudart = FakeCudart()
    saved = {name: sys.modules.get(name) for name in ("tensorrt", REAL_MODULE)}
    saved_env = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("precision"))
    sys.modules["tensorrt"], sys.modules[REAL_MODULE] = program_onnx_engines(FakeTensorRT(TRT_VERSION), cudart), cudart
    yield cudart
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    if saved_env is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved_env


def header(index: int) -> Header:
    msg = Header(frame_id="cam_optical")
    msg.stamp.sec = 3000 + index
    return msg


def camera_info() -> CameraInfo:
    return pinhole_info(WIDTH, HEIGHT, 80.0, "cam_optical")


def frame(index: int) -> Image:
    return array_to_image_msg(np.ascontiguousarray(sample_image(HEIGHT, WIDTH, seed=index)), "rgb8", header(index))


class Camera:
    """A camera publisher (image + camera info) into one namespace and collectors of the node's outputs there."""

    def __init__(self, graph: RosGraph, namespace: str) -> None:
        self.graph = graph
        self.image = graph.helper.create_publisher(Image, f"{namespace}/image", RELIABLE)
        self.info = graph.helper.create_publisher(CameraInfo, f"{namespace}/camera_info", RELIABLE)
        self.out = {topic: graph.collect(kind, f"{namespace}/{topic}", RELIABLE) for topic, kind in TOPICS.items()}

    def connected(self) -> bool:
        return self.image.get_subscription_count() >= 1 and self.info.get_subscription_count() >= 1 and all(
            c.subscription.get_publisher_count() >= 1 for c in self.out.values())

    def send(self, index: int) -> None:
        self.info.publish(camera_info())
        self.image.publish(frame(index))

    def wait(self, index: int, timeout: float = 60.0) -> dict[str, Any]:
        found = {}
        for topic, collector in self.out.items():
            assert collector.wait_for(lambda msgs: any(m.header.stamp.sec == 3000 + index for m in msgs), timeout), f"no {topic} for frame {index}"
            found[topic] = next(m for m in collector.messages if m.header.stamp.sec == 3000 + index)
        return found

    def warm_up(self, timeout: float = 90.0) -> None:
        """Frame 0 until its depth comes back: its image may overtake its camera info (two topics keep no order
        between them), so frame 0 may have no points; by the time its depth is out, the node holds the camera info."""
        self.send(0)
        assert self.out["depth"].wait_for(lambda msgs: any(m.header.stamp.sec == 3000 for m in msgs), timeout), "no depth for frame 0"

    def close(self) -> None:
        for collector in self.out.values():
            self.graph.helper.destroy_subscription(collector.subscription)
        self.graph.helper.destroy_publisher(self.image)
        self.graph.helper.destroy_publisher(self.info)


def start(graph: RosGraph, name: str, namespace: str, overrides: dict[str, Any]) -> PerceptionNode:
    return graph.start_perception(name, namespace, {"qos.reliability": "reliable", "points.stride": 1, **overrides})


def test_tensorrt_node_publishes_what_the_onnxruntime_node_publishes(graph, standins, tiny_model: Path, tmp_path) -> None:
    common = {"model.path": str(tiny_model), "model.precision": "fp32"}
    trt_node = start(graph, "perception_trt", "/trt", {**common, "model.backend": "tensorrt", "model.engine_cache_dir": str(tmp_path / "engines")})
    ort_node = start(graph, "perception_ort", "/ort", {**common, "model.backend": "onnxruntime", "model.provider": "cpu"})
    cameras = {ns: Camera(graph, f"/{ns}") for ns in ("trt", "ort")}
    try:
        assert trt_node.diagnostics_values()["backend"].startswith("tensorrt"), "the tensorrt backend serves, no fallback"
        assert wait_until(lambda: all(c.connected() for c in cameras.values()), 15)
        for camera in cameras.values():
            camera.warm_up()
        for index in (1, 2):
            for camera in cameras.values():
                camera.send(index)
            got = {ns: camera.wait(index) for ns, camera in cameras.items()}
            for topic in TOPICS:
                mine, theirs = got["trt"][topic], got["ort"][topic]
                assert (mine.height, mine.width) == (theirs.height, theirs.width) and bytes(mine.data) == bytes(theirs.data), topic
        assert trt_node.diagnostics_values()["frames_failed"] == 0 and standins.violations == []
    finally:
        for camera in cameras.values():
            camera.close()
        graph.stop_perception(trt_node)
        graph.stop_perception(ort_node)
    assert standins.live() == {"device": 0, "host": 0, "streams": 0}, "deactivation freed every CUDA buffer and stream"


def test_tensorrt_8_6_falls_back_to_onnxruntime_at_activation(graph, standins, tiny_model: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(TRT_VERSION, reported_version="8.6.2"))
    node = start(graph, "perception_jp60", "/jp60", {"model.path": str(tiny_model), "model.backend": "tensorrt"})
    try:
        assert node.diagnostics_values()["backend"] == "onnxruntime (cpu)"
    finally:
        graph.stop_perception(node)


def run_node_process(graph: RosGraph, tmp_path: Path, model: Path, namespace: str, backend: str, stand_in: bool) -> tuple[list[str], str]:
    """Start a node process, wait for the outputs of one frame, stop it with SIGINT: (its modules, its output)."""
    modules = tmp_path / f"{namespace}-modules.json"
    process = start_process(["-r", f"__ns:=/{namespace}", "-p", f"model.path:={model}", "-p", f"model.backend:={backend}",
                             "-p", "qos.reliability:=reliable", "-p", f"model.engine_cache_dir:={tmp_path / 'engines'}"],
                            script=HERE / "node_process.py", script_args=["--modules-out", str(modules), *(["--tensorrt", TRT_VERSION] if stand_in else [])],
                            env={**os.environ, CACHE_ENV: str(tmp_path / "precision")})
    camera = Camera(graph, f"/{namespace}")
    try:
        assert wait_until(camera.connected, 90), f"the {backend} node process did not connect"
        camera.warm_up()
        camera.send(1)
        camera.wait(1, 90)
    finally:
        camera.close()
        code, output = stop_process(process)
    assert code == 0, output
    return json.loads(modules.read_text()), output


@pytest.mark.parametrize("backend", ["tensorrt", "onnxruntime"])
def test_a_node_process_never_imports_torch(graph, tiny_model: Path, tmp_path, backend: str) -> None:
    modules, output = run_node_process(graph, tmp_path, tiny_model, f"proc_{backend}", backend, stand_in=backend == "tensorrt")
    assert "falling back" not in output, output
    assert "mtl_perception.ros.node" in modules and "onnxruntime" in modules
    if backend == "tensorrt":
        assert "tensorrt" in modules and REAL_MODULE in modules and "mtl_perception.inference.backends.tensorrt_backend" in modules
    torch_like = sorted(m for m in modules if m == "torch" or m.startswith("torch."))
    assert torch_like == [], f"the {backend} node process imported {torch_like[:5]}"
