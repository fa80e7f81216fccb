"""Launch perception_node (and optionally RViz) with a parameter file and topic remappings.

Examples:
  ros2 launch mtl_perception mtl_perception.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info
  ros2 launch mtl_perception mtl_perception.launch.py model:=/models/nyu.onnx backend:=tensorrt rviz:=true
  ros2 launch mtl_perception mtl_perception.launch.py autostart:=false     # a lifecycle manager drives the node
  ros2 launch mtl_perception mtl_perception.launch.py \
      params_file:=$(ros2 pkg prefix mtl_perception)/share/mtl_perception/config/two_cameras.yaml   # two cameras, one node
  ros2 launch mtl_perception mtl_perception.launch.py --show-args          # every argument with its meaning

Every argument is checked before any process starts (mtl_perception.ros.launch_checks): a params_file that
does not exist or has no ros__parameters, an unknown log_level, backend, provider or precision, a backend
that cannot read the model file, a missing model or Fast DDS profile, a flag that is not true/false: the
launch ends with one line naming the argument, and nothing is left running. rviz:=true starts rviz2 where
it is installed; where it is not, the launch says so and starts the node alone.
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.logging import get_logger
from launch_ros.actions import Node

from mtl_perception.paths import fastdds_profile_env
from mtl_perception.ros.launch_checks import CHOICES, check_arguments, misspelt_arguments

PACKAGE = "mtl_perception"
# This file lives in <share>/mtl_perception/launch/ once installed (and in <repo>/launch/ in the sources).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def _launch_setup(context, declared: list[str]):
    """Check every argument, then perception_node with them applied (and rviz2 when asked for and installed)."""
    values = dict(context.launch_configurations)  # every declared argument, as the string it was given
    for hint in misspelt_arguments(values, declared):
        get_logger("launch").warning(hint)
    checked = check_arguments(values)  # LaunchArgumentError: launch reports the line and exits 1, nothing started
    image, profile = values["image"], values["fastdds_profile"]
    actions = [
        Node(
            package=PACKAGE,
            executable="perception_node",
            name=values["node_name"],
            namespace=values["namespace"],
            parameters=[checked.params_file, checked.parameters],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed"), ("camera_info", values["camera_info"])],
            arguments=["--ros-args", "--log-level", checked.log_level],
            additional_env=fastdds_profile_env(profile) if profile else None,  # the variable this Fast DDS major reads
            output="screen",
            emulate_tty=True,
            on_exit=Shutdown(reason="perception_node exited"),  # never RViz left alone, nor the launch waiting
        )
    ]
    if checked.rviz_missing:
        get_logger("launch").warning("rviz:=true, but rviz2 is not installed (sudo apt install ros-$ROS_DISTRO-rviz2): starting perception_node without it")
    if checked.rviz:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=values["namespace"],
                arguments=["-d", values["rviz_config"], "-f", values["fixed_frame"]],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("params_file", default_value=str(CONFIG_DIR / "mtl_perception.yaml"), description="YAML parameter file of perception_node (keyed /** -> ros__parameters); must exist"),
        DeclareLaunchArgument("model", default_value="", description="Exported .onnx model (or checkpoint for backend torch); empty keeps the params file's model.path"),
        DeclareLaunchArgument("backend", default_value="", choices=list(CHOICES["backend"]), description="Inference backend: onnxruntime | tensorrt | torch; empty keeps the params file's model.backend"),
        DeclareLaunchArgument("provider", default_value="", choices=list(CHOICES["provider"]), description="onnxruntime execution provider: auto | cpu | cuda | tensorrt; empty keeps the params file's model.provider"),
        DeclareLaunchArgument("precision", default_value="", choices=list(CHOICES["precision"]), description="Numeric precision: default | fp32 | fp16 | int8 (tensorrt); empty keeps the params file's model.precision"),
        DeclareLaunchArgument("autostart", default_value="", description="true: the node configures and activates itself; false: it waits for a lifecycle manager; empty keeps the params file's (true)"),
        DeclareLaunchArgument("use_sim_time", default_value="", description="true: the node follows /clock (bag replay, simulation); empty keeps the params file's (false)"),
        DeclareLaunchArgument("image", default_value="image", description="Camera image topic the node's 'image' input is remapped to (and <image>/compressed)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="Camera info topic the node's 'camera_info' input is remapped to"),
        DeclareLaunchArgument("compressed", default_value="false", description="true: subscribe to <image>/compressed (JPEG/PNG) instead of raw images"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and of its output topics"),
        DeclareLaunchArgument("node_name", default_value="perception_node", description="Name of the node (the YAML keys apply to any name: /**)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level of the node: debug | info | warn | error | fatal"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=str(CONFIG_DIR / "fastdds_large_images.xml"),
            description="Fast DDS XML profile for the node (large shared-memory segment for multi-MB images); empty keeps the environment's",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="true: also start rviz2 with config/mtl_perception.rviz (overlay, depth colour map, class-coloured points), where rviz2 is installed"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_color_optical_frame", description="RViz fixed frame: the camera's optical frame (the frame_id of its images)"),
        DeclareLaunchArgument("rviz_config", default_value=str(CONFIG_DIR / "mtl_perception.rviz"), description="RViz configuration file used when rviz:=true"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_setup, kwargs={"declared": [a.name for a in arguments]})])
