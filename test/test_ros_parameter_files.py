"""The shipped parameter files through ROS's own parser: a real perception_node process per file under config/
(``--params-file FILE``, as ``ros2 run`` and the launch file's default pass it), every declared parameter read
back over the node's parameter services and compared with the file (value and type); and a user's file with
an unquoted ``nan`` / ``inf`` for ``depth.out_of_range``, which the node accepts as the string it spells.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
from rcl_interfaces.msg import ParameterType  # noqa: E402
from ros_fixtures import RosGraph, ros_graph  # noqa: E402
from ros_node_process import NodeServices, start_process, stop_process  # noqa: E402
from test_ros_parameters import flatten, node_parameter_files  # noqa: E402

from mtl_perception.ros import parameters as params  # noqa: E402
from mtl_perception.ros.camera_channel import camera_defaults  # noqa: E402

PYTHON_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER, float: ParameterType.PARAMETER_DOUBLE,
                str: ParameterType.PARAMETER_STRING}


graph = ros_graph(offset=83)


def parameter_type(value: Any) -> int:
    if isinstance(value, list):
        return ParameterType.PARAMETER_STRING_ARRAY if all(isinstance(v, str) for v in value) else -1
    return PYTHON_TYPES[type(value)]


def expected_values(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the file's values, every declared parameter's expected value: the file's, else the default)."""
    document = yaml.safe_load(path.read_text())
    from_file = flatten(document["/**"]["ros__parameters"])
    expected = {spec.name: spec.default for spec in params.SPECS}
    for name in from_file.get("cameras.names", []):
        expected.update({f"cameras.{name}.{key}": value for key, value in camera_defaults(name).items()})
    expected.update(from_file)
    return from_file, expected


def run_with_file(graph: RosGraph, path: Path, namespace: str) -> tuple[NodeServices, Any]:
    process = start_process(["-r", f"__ns:={namespace}", "--params-file", str(path)])
    services = NodeServices(graph, f"{namespace}/perception_node")
    if not services.wait_ready(process):
        code, output = stop_process(process)
        pytest.fail(f"perception_node --params-file {path.name} did not come up (exit {code}):\n{output[-3000:]}")
    return services, process


@pytest.mark.parametrize("path", node_parameter_files(), ids=lambda p: p.name)
def test_node_starts_with_the_shipped_file_and_holds_its_values(graph: RosGraph, path: Path):
    from_file, expected = expected_values(path)
    namespace = f"/pf_{path.stem}"
    services, process = run_with_file(graph, path, namespace)
    try:
        assert services.state() == "active", "the file's autostart: true (or the default) configures and activates"
        declared = services.names()
        assert set(from_file) <= set(declared), f"keys of {path.name} the node does not declare: {sorted(set(from_file) - set(declared))}"
        ours = [name for name in declared if name in expected]
        assert set(ours) == set(expected)
        values = services.get(ours)
        wrong = {name: got for name, got in values.items() if got != (parameter_type(expected[name]), expected[name])}
        assert wrong == {}, f"read back differently from {path.name}: {wrong}"
    finally:
        code, output = stop_process(process)
    assert code == 0, output[-3000:]


@pytest.mark.parametrize("spelling,meant", [("nan", "nan"), ("inf", "inf")])
def test_a_users_unquoted_nan_or_inf_is_the_string_it_spells(graph: RosGraph, tmp_path: Path, spelling: str, meant: str):
    path = tmp_path / "user.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    autostart: false\n    depth:\n      out_of_range: {spelling}\n")
    services, process = run_with_file(graph, path, f"/user_{meant}")
    try:
        assert services.get(["depth.out_of_range"]) == {"depth.out_of_range": (ParameterType.PARAMETER_STRING, meant)}
        assert services.set("depth.out_of_range", float("nan"))[0], "`ros2 param set ... depth.out_of_range nan` sends a double"
        assert not services.set("depth.out_of_range", 2.5)[0]
        assert services.set("depth.out_of_range", "inf")[0]
    finally:
        code, output = stop_process(process)
    assert code == 0, output[-3000:]


def test_a_number_for_another_string_parameter_stops_with_one_line(tmp_path: Path):
    path = tmp_path / "user.yaml"
    path.write_text("/**:\n  ros__parameters:\n    model:\n      precision: 1e3\n")
    process = start_process(["--params-file", str(path)])
    output, _ = process.communicate(timeout=60)  # it exits by itself
    code = process.returncode
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert code == 1 and len(lines) == 1, output[-3000:]
    assert "'model.precision' must be a string" in lines[0] and 'precision: "..."' in lines[0]
