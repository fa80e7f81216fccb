"""The launch file and the RViz layout: every argument documented and checked before anything starts, RViz only
where it is installed, the RViz displays the issue asks for.

The argument checks (mtl_perception.ros.launch_checks) run everywhere; the launch description itself is loaded
and run with the real ``launch``/``launch_ros`` where they are importable (a ROS 2 distribution; no PyPI wheels).
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from mtl_perception.inference.backends import MODEL_SUFFIXES
from mtl_perception.ros import launch_checks
from mtl_perception.ros.launch_checks import LaunchArgumentError, check_arguments, misspelt_arguments
from mtl_perception.ros.parameters import SPEC_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "mtl_perception.launch.py"
RVIZ = ROOT / "config" / "mtl_perception.rviz"
EXPECTED_ARGUMENTS = {
    "params_file", "model", "backend", "provider", "precision", "autostart", "use_sim_time", "image", "camera_info",
    "compressed", "namespace", "node_name", "log_level", "fastdds_profile", "rviz", "fixed_frame", "rviz_config",
}
PARAMS = ROOT / "config" / "mtl_perception.yaml"
NO_LAUNCH = "launch/launch_ros have no PyPI wheels; they come with a ROS 2 distribution"


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


def defaults(**given: str) -> dict[str, str]:
    """The launch arguments as the launch file's defaults give them, with ``given`` applied."""
    values = {name: ast.literal_eval(keywords["default_value"]) if keywords["default_value"].startswith(("'", '"')) else None for name, keywords in declared_arguments().items()}
    values.update(params_file=str(PARAMS), fastdds_profile=str(ROOT / "config" / "fastdds_large_images.xml"), rviz_config=str(ROOT / "config" / "mtl_perception.rviz"))
    values.update(given)
    assert None not in values.values()
    return values


def test_defaults_start_the_node_with_the_params_file_alone() -> None:
    checked = check_arguments(defaults(), rviz_installed=False)
    assert checked.params_file == str(PARAMS) and checked.log_level == "info"
    assert checked.parameters == {"input.compressed": False}  # everything else: the params file's
    assert not checked.rviz and not checked.rviz_missing


def test_node_settings_reach_the_node_as_parameters() -> None:
    checked = check_arguments(defaults(autostart="false", use_sim_time="True", compressed="1", backend="onnxruntime", provider="cpu", precision="fp32", log_level="WARN"), rviz_installed=False)
    assert checked.parameters == {
        "input.compressed": True, "autostart": False, "use_sim_time": True, "model.backend": "onnxruntime", "model.provider": "cpu", "model.precision": "fp32",
    }
    assert checked.log_level == "warn"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"log_level": "loud"}, "log_level:='loud' is not one of debug, info, warn, error, fatal"),
        ({"params_file": "/nonexistent/params.yaml"}, "params_file:=/nonexistent/params.yaml does not exist"),
        ({"params_file": ""}, "params_file:='' is empty"),
        ({"backend": "bogus"}, "backend:='bogus' is not one of onnxruntime, tensorrt, torch"),
        ({"provider": "gpu"}, "provider:='gpu' is not one of"),
        ({"backend": "torch"}, "backend torch reads .pt or .pth files, but the model is the default model (default.onnx)"),
        ({"backend": "tensorrt", "model": "/models/net.pt"}, "backend tensorrt reads .onnx files, but the model is /models/net.pt"),
        ({"model": "/nonexistent/model.onnx"}, "model:=/nonexistent/model.onnx does not exist"),
        ({"fastdds_profile": "/nonexistent/profile.xml"}, "fastdds_profile:=/nonexistent/profile.xml does not exist"),
        ({"compressed": "maybe"}, "compressed:='maybe' is not a boolean"),
        ({"autostart": "no"}, "autostart:='no' is not a boolean"),
        ({"rviz": "yes"}, "rviz:='yes' is not a boolean"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(given: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchArgumentError) as caught:
        check_arguments(defaults(**given), rviz_installed=False)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {path: x}\n", "has no '<node name or /**>: ros__parameters:' section"),
        ("/**:\n  ros__parameters: [1, 2]\n", "has no '<node name or /**>: ros__parameters:' section"),
        ("/**: {ros__parameters: {a: 1}\n", "is not readable YAML"),
        ("- just\n- a list\n", "has no '<node name or /**>: ros__parameters:' section"),
    ],
)
def test_params_files_without_node_parameters_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(LaunchArgumentError, match="params_file:=.*params.yaml") as caught:
        check_arguments(defaults(params_file=str(path)), rviz_installed=False)
    assert message in str(caught.value)


def test_the_params_files_backend_and_model_are_checked_together(tmp_path: Path) -> None:
    checkpoint = tmp_path / "net.pt"
    checkpoint.write_bytes(b"x")
    params = tmp_path / "params.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    model:\n      backend: torch\n      path: {checkpoint}\n")
    assert check_arguments(defaults(params_file=str(params)), rviz_installed=False).parameters == {"input.compressed": False}
    with pytest.raises(LaunchArgumentError, match="backend onnxruntime reads .onnx files, but the model is .*net.pt"):
        check_arguments(defaults(params_file=str(params), backend="onnxruntime"), rviz_installed=False)
    params.write_text("/**:\n  ros__parameters:\n    model.path: /nonexistent/nyu.onnx\n")
    with pytest.raises(LaunchArgumentError, match=r"model.path in .*params.yaml: /nonexistent/nyu.onnx does not exist"):
        check_arguments(defaults(params_file=str(params)), rviz_installed=False)


def test_rviz_starts_only_where_it_is_installed(tmp_path: Path) -> None:
    missing = check_arguments(defaults(rviz="true"), rviz_installed=False)
    assert not missing.rviz and missing.rviz_missing  # the node alone, and a warning
    assert check_arguments(defaults(rviz="true"), rviz_installed=True).rviz
    with pytest.raises(LaunchArgumentError, match="rviz_config:=.*nope.rviz does not exist"):
        check_arguments(defaults(rviz="true", rviz_config=str(tmp_path / "nope.rviz")), rviz_installed=True)
    assert not check_arguments(defaults(rviz="false", rviz_config=str(tmp_path / "nope.rviz")), rviz_installed=True).rviz


def test_near_misses_of_argument_names_are_pointed_out() -> None:
    names = list(EXPECTED_ARGUMENTS)
    assert misspelt_arguments(["autostrat", "rviz", "robot_description"], names) == [
        "launch argument 'autostrat' is not declared by this launch file and is ignored: did you mean 'autostart'? (--show-args lists them)"
    ]


def test_launch_checks_agree_with_the_node() -> None:
    """The launch module repeats a few of the node's facts (it must import without NumPy): they must match."""
    for argument, parameter in (("backend", "model.backend"), ("provider", "model.provider"), ("precision", "model.precision")):
        assert set(launch_checks.CHOICES[argument]) - {""} == set(SPEC_BY_NAME[parameter].choices), argument
    assert launch_checks.MODEL_SUFFIXES == MODEL_SUFFIXES
    assert SPEC_BY_NAME["model.backend"].default == launch_checks.DEFAULT_BACKEND
    assert (ROOT / "models" / launch_checks.DEFAULT_MODEL).is_file()
    assert yaml.safe_load(PARAMS.read_text())["/**"]["ros__parameters"]["autostart"] is True  # as the descriptions say
    declared = declared_arguments()
    for name in launch_checks.CHOICES:
        assert declared[name]["choices"] == f"list(CHOICES[{name!r}])", name


def load_launch_file():
    spec = importlib.util.spec_from_file_location("mtl_perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_setup_actions(**given: str) -> list:
    """Run the launch file's declarations and its OpaqueFunction in a real LaunchContext; the actions it returns."""
    from launch import LaunchContext
    from launch.actions import OpaqueFunction

    description = load_launch_file().generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update(given)
    for entity in description.entities:
        if not isinstance(entity, OpaqueFunction):
            entity.execute(context)  # DeclareLaunchArgument: default values and choices
    opaque = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    assert len(opaque) == 1
    return opaque[0].execute(context)


def test_launch_description_builds_with_upstream_launch() -> None:
    pytest.importorskip("launch_ros", reason=NO_LAUNCH)
    description = load_launch_file().generate_launch_description()
    arguments = {arg.name: arg for arg in description.get_launch_arguments()}
    assert set(arguments) == EXPECTED_ARGUMENTS == set(declared_arguments())
    assert all(arg.description for arg in arguments.values())
    assert arguments["backend"].choices == ["", "onnxruntime", "tensorrt", "torch"]


def test_upstream_launch_starts_the_node_and_rviz_only_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("launch_ros", reason=NO_LAUNCH)
    from launch_ros.actions import Node

    monkeypatch.setattr(launch_checks, "rviz2_installed", lambda: False)
    actions = launch_setup_actions(rviz="true", autostart="false")
    assert [(a.node_package, a.node_executable) for a in actions] == [("mtl_perception", "perception_node")]
    assert all(isinstance(a, Node) for a in actions)
    monkeypatch.setattr(launch_checks, "rviz2_installed", lambda: True)
    actions = launch_setup_actions(rviz="true")
    assert [(a.node_package, a.node_executable) for a in actions] == [("mtl_perception", "perception_node"), ("rviz2", "rviz2")]


def test_upstream_launch_refuses_bad_arguments_before_any_process() -> None:
    pytest.importorskip("launch_ros", reason=NO_LAUNCH)
    with pytest.raises(LaunchArgumentError, match="log_level"):
        launch_setup_actions(log_level="loud")
    with pytest.raises(RuntimeError, match='Argument "backend" provided value "bogus" is not valid'):
        launch_setup_actions(backend="bogus")  # DeclareLaunchArgument's own choices check
    import launch
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    service = launch.LaunchService(argv=[], noninteractive=True)
    include = launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH)), launch_arguments=[("params_file", "/nonexistent.yaml")])
    service.include_launch_description(launch.LaunchDescription([include]))
    assert service.run() == 1  # "Caught exception in launch ...: params_file:=/nonexistent.yaml does not exist"


def test_rviz_layout_shows_overlay_depth_colours_and_class_coloured_points() -> None:
    layout = yaml.safe_load(RVIZ.read_text())
    displays = {d["Name"]: d for d in layout["Visualization Manager"]["Displays"]}
    images = {d["Topic"]["Value"] for d in displays.values() if d["Class"] == "rviz_default_plugins/Image"}
    assert images == {"semantic/overlay", "depth/color"}
    clouds = [d for d in displays.values() if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert len(clouds) == 1 and clouds[0]["Topic"]["Value"] == "points" and clouds[0]["Color Transformer"] == "RGB8"
    # the node publishes images with reliable QoS (RViz's default), so the displays subscribe reliably
    assert all(d["Topic"]["Reliability Policy"] == "Reliable" for d in displays.values() if "Topic" in d)
