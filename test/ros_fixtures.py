"""Shared helpers of the ROS node tests: a tiny exported model and an isolated in-process ROS graph.

Imported by the test_ros_* modules (not a conftest: the lead owns test/conftest.py). The model is
built once per pytest process whichever module asks first. Each module gets its own ROS domain
(derived from the pid and a per-module offset) and localhost-only discovery, set before rclpy.init.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

MODEL_HEIGHT, MODEL_WIDTH = 64, 96
NUM_CLASSES = 5
CLASS_NAMES = ["floor", "wall", "table", "chair", "person"]
PALETTE = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200], [250, 250, 0]]
_MODEL_CACHE: dict[str, Path] = {}


def build_tiny_model(folder: Path, height: int = MODEL_HEIGHT, width: int = MODEL_WIDTH, encoder: str = "resnet18") -> tuple[Path, Path]:
    """A randomly initialised 3-task network, saved as a checkpoint and exported to ONNX: (onnx, checkpoint)."""
    import torch

    from mtl_perception.config import ExperimentConfig
    from mtl_perception.inference.export import export_onnx
    from mtl_perception.model.network import build_model
    from mtl_perception.training.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ExperimentConfig()
    config.model.encoder = encoder
    config.model.num_classes = NUM_CLASSES
    config.data.height, config.data.width = height, width
    config.validate()
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"tiny_{encoder}_{height}x{width}.pt"
    model = build_model(config.model).eval()
    save_checkpoint(checkpoint, {"config": config.to_dict(), "model": model.state_dict(), "dataset": {"class_names": CLASS_NAMES, "palette": PALETTE}})
    onnx_path = folder / f"tiny_{encoder}_{height}x{width}.onnx"
    export_onnx(checkpoint, onnx_path, parity_frames=1)
    return onnx_path, checkpoint


def cached_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ONNX model, exported at most once per pytest process."""
    if "onnx" not in _MODEL_CACHE:
        onnx_path, checkpoint = build_tiny_model(tmp_path_factory.mktemp("ros_model"))
        _MODEL_CACHE["onnx"], _MODEL_CACHE["checkpoint"] = onnx_path, checkpoint
    return _MODEL_CACHE["onnx"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_tiny_model(tmp_path_factory)


def isolate_ros_domain(offset: int) -> int:
    """Set a private ROS_DOMAIN_ID (1..100) and localhost-only discovery for this process and its children."""
    domain = 1 + (os.getpid() * 7 + offset) % 100
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    return domain


class RosGraph:
    """An rclpy context with a background executor, a helper node for test publishers/subscribers."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.helper = rclpy.create_node("test_helper", context=self.context)
        self._stopping = False
        self.executor.add_node(self.helper)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy._rclpy_pybind11 import InvalidHandle
        from rclpy.executors import ExternalShutdownException, ShutdownException

        while self.context.ok() and not self._stopping:
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:
                # a test destroyed a subscription or publisher while this thread waited on it
                # (an rclpy race of destroying entities from another thread); the next wait rebuilds its set
                continue
            except (ExternalShutdownException, ShutdownException):
                return

    def add(self, node: Any) -> Any:
        self.executor.add_node(node)
        return node

    def remove(self, node: Any) -> None:
        self.executor.remove_node(node)

    def collect(self, msg_type: type, topic: str, qos: Any = 10) -> "Collector":
        collector = Collector()
        collector.subscription = self.helper.create_subscription(msg_type, topic, collector.add, qos)
        return collector

    def close(self) -> None:
        import rclpy

        self._stopping = True
        self._thread.join(5)
        self.executor.shutdown()
        self.helper.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Collector:
    """Messages received on one topic, with a wait helper."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._cond = threading.Condition()
        self.subscription: Any = None

    def add(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()
