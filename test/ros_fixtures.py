"""Shared helpers of the ROS node tests: an in-process ROS graph (with perception nodes started and stopped on
it), a message collector, a wait helper, a pinhole camera info.

The tiny model they run is conftest.py's session fixture ``tiny_model`` (the synthetic class set:
``CLASS_NAMES`` / ``PALETTE``); each module takes its ``graph`` fixture from ``ros_graph(offset)``, which isolates
the graph with ``mtl_perception.ros.domain.isolate_ros_domain`` (a per-module offset) before ``rclpy.init``.
Nothing here imports rclpy until it is called: modules with tests that need no ROS import it freely.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, Mapping

from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE

CLASS_NAMES = list(SYNTH_CLASS_NAMES)
PALETTE = [list(c) for c in SYNTH_PALETTE]


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

    def start_perception(self, name: str, namespace: str, overrides: Mapping[str, Any] | None = None,
                         cli_args: list[str] | None = None) -> Any:
        """A PerceptionNode (``autostart`` off, then ``overrides``) on this graph's executor, configured and activated."""
        from rclpy.lifecycle import TransitionCallbackReturn
        from rclpy.parameter import Parameter

        from mtl_perception.ros.node import PerceptionNode

        params = [Parameter(k, value=v) for k, v in {"autostart": False, **(overrides or {})}.items()]
        node = self.add(PerceptionNode(name, namespace=namespace, parameter_overrides=params, cli_args=cli_args, context=self.context))
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        return node

    def stop_perception(self, node: Any) -> None:
        """Release a perception node's resources, take it off the executor and destroy it."""
        node.release()
        self.remove(node)
        node.destroy_node()

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


def ros_graph(offset: int) -> Any:
    """A module's ``graph`` fixture (``graph = ros_graph(offset=N)``): one RosGraph for the module, on the ROS domain
    ``isolate_ros_domain(offset=N)`` gives it; skips its tests when rclpy is not installed."""
    import pytest

    @pytest.fixture(scope="module")
    def graph() -> Iterator[RosGraph]:
        pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
        from mtl_perception.ros.domain import isolate_ros_domain

        ros = RosGraph(isolate_ros_domain(offset=offset))
        yield ros
        ros.close()

    return graph


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


def pinhole_info(width: int, height: int, fx: float, frame_id: str = "", stamp: int = 0) -> Any:
    """A CameraInfo of an undistorted pinhole camera: focal ``fx`` (square pixels), principal point at the image centre."""
    from sensor_msgs.msg import CameraInfo

    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.stamp.sec, info.header.frame_id = stamp, frame_id
    return info
