"""Shared helpers of the ROS node tests: an in-process ROS graph, a message collector, a wait helper.

The tiny model they run is conftest.py's session fixture ``tiny_model`` (the synthetic class set:
``CLASS_NAMES`` / ``PALETTE``); each module isolates its graph with ``mtl_perception.ros.domain.isolate_ros_domain``
(a per-module offset) before ``rclpy.init``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

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
