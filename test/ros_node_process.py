"""perception_node in its own process, and a client for its parameter and lifecycle services.

The child is started by this venv's Python (the ROS wheels' library path is inherited); the client calls the
standard ``rcl_interfaces`` / ``lifecycle_msgs`` services from the helper node of a ``ros_fixtures.RosGraph``
and waits on each response's future.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ros_fixtures import RosGraph

NODE_MODULE = ["-m", "mtl_perception.ros.node"]
SERVICE_TIMEOUT_S = 60.0  # a fresh process imports numpy, onnxruntime and the ROS wheels first


def start_process(ros_args: list[str], script: Path | None = None, env: dict[str, str] | None = None,
                  script_args: Sequence[str] = ()) -> subprocess.Popen:
    """``python -m mtl_perception.ros.node --ros-args ...`` (or ``python SCRIPT [SCRIPT_ARGS] --ros-args ...``, e.g.
    ``node_process.py``), output captured."""
    entry = [str(script), *script_args] if script is not None else NODE_MODULE
    return subprocess.Popen([sys.executable, *entry, "--ros-args", *ros_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def stop_process(process: subprocess.Popen, timeout: float = 30.0, sig: int = signal.SIGINT) -> tuple[int, str]:
    """Send ``sig`` (SIGINT: what Ctrl-C does), then wait; (exit code, output); -999 when it had to be killed."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return -999, output
    return process.returncode, output


class NodeServices:
    """The parameter and lifecycle services of the node named ``fqn`` (e.g. /ns/perception_node)."""

    def __init__(self, graph: RosGraph, fqn: str) -> None:
        from lifecycle_msgs.srv import GetState
        from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters

        helper = graph.helper
        self._clients = {
            "list": helper.create_client(ListParameters, f"{fqn}/list_parameters"),
            "get": helper.create_client(GetParameters, f"{fqn}/get_parameters"),
            "set": helper.create_client(SetParameters, f"{fqn}/set_parameters"),
            "state": helper.create_client(GetState, f"{fqn}/get_state"),
        }
        self._types = {"list": ListParameters, "get": GetParameters, "set": SetParameters, "state": GetState}

    def wait_ready(self, process: subprocess.Popen | None = None) -> bool:
        """True once every service is discovered (False when the process exits first or SERVICE_TIMEOUT_S pass)."""
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        for client in self._clients.values():
            while not client.wait_for_service(timeout_sec=1.0):  # returns as soon as the service appears
                if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                    return False
        return True

    def _call(self, kind: str, request: Any) -> Any:
        done = threading.Event()
        future = self._clients[kind].call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(SERVICE_TIMEOUT_S):
            raise TimeoutError(f"no answer from the node's {kind} service within {SERVICE_TIMEOUT_S:.0f} s")
        return future.result()

    def names(self) -> list[str]:
        return list(self._call("list", self._types["list"].Request()).result.names)

    def get(self, names: list[str]) -> dict[str, tuple[int, Any]]:
        """{name: (rcl_interfaces ParameterType, Python value)}."""
        from rclpy.parameter import parameter_value_to_python

        values = self._call("get", self._types["get"].Request(names=names)).values
        return {name: (value.type, parameter_value_to_python(value)) for name, value in zip(names, values)}

    def set(self, name: str, value: Any) -> tuple[bool, str]:
        """(successful, reason) of setting one parameter."""
        from rclpy.parameter import Parameter

        request = self._types["set"].Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        result = self._call("set", request).results[0]
        return result.successful, result.reason

    def state(self) -> str:
        return self._call("state", self._types["state"].Request()).current_state.label
