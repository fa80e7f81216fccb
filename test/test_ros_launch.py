"""The launch file and the RViz layout: every argument documented, the RViz displays the issue asks for."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "mtl_perception.launch.py"
RVIZ = ROOT / "config" / "mtl_perception.rviz"
EXPECTED_ARGUMENTS = {"params_file", "model", "backend", "image", "camera_info", "compressed", "namespace", "log_level", "rviz"}


def declared_arguments() -> dict[str, dict[str, str]]:
    """name -> keyword arguments (as source text) of every DeclareLaunchArgument call in the launch file."""
    found = {}
    for call in ast.walk(ast.parse(LAUNCH.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            name = ast.literal_eval(call.args[0])
            found[name] = {kw.arg: ast.unparse(kw.value) for kw in call.keywords}
    return found


def test_every_launch_argument_has_a_description() -> None:
    arguments = declared_arguments()
    assert EXPECTED_ARGUMENTS <= set(arguments)
    for name, keywords in arguments.items():
        assert "description" in keywords and len(keywords["description"]) > 10, name
        assert "default_value" in keywords, name


def test_launch_description_builds_with_upstream_launch() -> None:
    pytest.importorskip("launch_ros", reason="launch/launch_ros have no PyPI wheels; they come with a ROS 2 distribution")
    import importlib.util

    spec = importlib.util.spec_from_file_location("mtl_perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {arg.name for arg in description.get_launch_arguments()}
    assert EXPECTED_ARGUMENTS <= names
    assert all(arg.description for arg in description.get_launch_arguments())


def test_rviz_layout_shows_overlay_depth_colours_and_class_coloured_points() -> None:
    layout = yaml.safe_load(RVIZ.read_text())
    displays = {d["Name"]: d for d in layout["Visualization Manager"]["Displays"]}
    images = {d["Topic"]["Value"] for d in displays.values() if d["Class"] == "rviz_default_plugins/Image"}
    assert images == {"semantic/overlay", "depth/color"}
    clouds = [d for d in displays.values() if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert len(clouds) == 1 and clouds[0]["Topic"]["Value"] == "points" and clouds[0]["Color Transformer"] == "RGB8"
    # the node publishes images with reliable QoS (RViz's default), so the displays subscribe reliably
    assert all(d["Topic"]["Reliability Policy"] == "Reliable" for d in displays.values() if "Topic" in d)
