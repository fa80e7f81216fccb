"""Topic names and frame ids the bag tools write, and expect by default when reading.

Camera and ground truth (written by ``bag-make``)::

    /camera/image_raw              sensor_msgs/Image rgb8 (or .../compressed: CompressedImage jpeg|png)
    /camera/camera_info            sensor_msgs/CameraInfo
    /gt/depth                      sensor_msgs/Image 32FC1 metres, NaN = no ground truth (REP-118)
    /gt/semantic                   sensor_msgs/Image mono8 class ids, 255 = unlabelled
    /gt/normals                    sensor_msgs/Image 32FC3 unit vectors (optical frame), 0 = no ground truth
    /gt/semantic/classes           std_msgs/String JSON class table (names, colours, ignore id)

Predictions (the node's outputs under its namespace, and ``bag-eval --output-bag``)::

    /perception/depth              32FC1 metres, NaN = no estimate
    /perception/semantic           mono8 class ids
    /perception/normals            32FC3 unit vectors
    /perception/semantic/classes   std_msgs/String JSON class table
    /perception/depth/color, /perception/semantic/overlay   bgr8 pictures for RViz/Foxglove

Every message carries the camera frame's header (stamp and ``camera_optical_frame``).
"""
from __future__ import annotations

from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC

FRAME_ID = "camera_optical_frame"

CAMERA_IMAGE_TOPIC = "/camera/image_raw"
CAMERA_COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"

GT_NAMESPACE = "/gt"
PREDICTION_NAMESPACE = "/perception"
CLASSES_SUFFIX = "semantic/classes"

# task -> (topic name under a namespace, encoding)
TASK_TOPICS: dict[str, tuple[str, str]] = {
    DEPTH: ("depth", "32FC1"),
    SEMANTIC: ("semantic", "mono8"),
    NORMALS: ("normals", "32FC3"),
}
# pictures the output bag carries for viewers (name under the prediction namespace)
DEPTH_COLOR_NAME = "depth/color"
SEMANTIC_OVERLAY_NAME = "semantic/overlay"

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STRING_TYPE = "std_msgs/msg/String"


def join_topic(namespace: str, name: str) -> str:
    """``/gt`` + ``depth`` -> ``/gt/depth`` (one slash, absolute)."""
    return "/" + "/".join(part for part in (namespace.strip("/"), name.strip("/")) if part)


def task_topic(namespace: str, task: str) -> str:
    """The topic of ``task``'s image under ``namespace``."""
    return join_topic(namespace, TASK_TOPICS[task][0])


def classes_topic(namespace: str) -> str:
    """The class-table topic under ``namespace``."""
    return join_topic(namespace, CLASSES_SUFFIX)
