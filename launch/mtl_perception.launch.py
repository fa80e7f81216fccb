"""Launch perception_node (and optionally RViz) with a parameter file and topic remappings.

Examples:
  ros2 launch mtl_perception mtl_perception.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info
  ros2 launch mtl_perception mtl_perception.launch.py model:=/models/nyu.onnx backend:=tensorrt rviz:=true
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "mtl_perception"
# This file lives in <share>/mtl_perception/launch/ once installed (and in <repo>/launch/ in the sources).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def _node(context, *args, **kwargs):
    """perception_node with the launch arguments applied (empty model/backend keep the params file's)."""
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"input.compressed": value("compressed").lower() in ("true", "1", "yes")}
    if value("model"):
        overrides["model.path"] = value("model")
    if value("backend"):
        overrides["model.backend"] = value("backend")
    image, camera_info = value("image"), value("camera_info")
    profile = value("fastdds_profile")
    return [
        Node(
            package=PACKAGE,
            executable="perception_node",
            name=value("node_name"),
            namespace=value("namespace"),
            parameters=[value("params_file"), overrides],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed"), ("camera_info", camera_info)],
            arguments=["--ros-args", "--log-level", value("log_level")],
            additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else None,
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("params_file", default_value=str(CONFIG_DIR / "mtl_perception.yaml"), description="YAML parameter file of perception_node (keyed /** -> ros__parameters)"),
        DeclareLaunchArgument("model", default_value="", description="Exported .onnx model (or checkpoint for backend torch); empty keeps the params file's model.path"),
        DeclareLaunchArgument("backend", default_value="", description="Inference backend: onnxruntime | tensorrt | torch; empty keeps the params file's model.backend"),
        DeclareLaunchArgument("image", default_value="image", description="Camera image topic the node's 'image' input is remapped to (and <image>/compressed)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="Camera info topic the node's 'camera_info' input is remapped to"),
        DeclareLaunchArgument("compressed", default_value="false", description="true: subscribe to <image>/compressed (JPEG/PNG) instead of raw images"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and of its output topics"),
        DeclareLaunchArgument("node_name", default_value="perception_node", description="Name of the node (the YAML keys apply to any name: /**)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level: debug | info | warn | error | fatal"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=str(CONFIG_DIR / "fastdds_large_images.xml"),
            description="Fast DDS XML profile for the node (large shared-memory segment for multi-MB images); empty keeps the environment's",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="true: also start rviz2 with config/mtl_perception.rviz (overlay, depth colour map, class-coloured points)"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_color_optical_frame", description="RViz fixed frame: the camera's optical frame (the frame_id of its images)"),
        DeclareLaunchArgument("rviz_config", default_value=str(CONFIG_DIR / "mtl_perception.rviz"), description="RViz configuration file used when rviz:=true"),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", LaunchConfiguration("rviz_config"), "-f", LaunchConfiguration("fixed_frame")],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=_node), rviz])
