"""The deploy graph's buffers of one frame -> the node's output messages (only those someone wants).

Every message carries the input frame's header. Colour images are bgr8; ``depth`` is 32FC1 metres with
NaN where there is no estimate (REP-118); ``normals`` is 32FC3 unit vectors in the camera optical frame.
Each buffer already has its message's layout: images and the point cloud are written as serialised
messages (``ros/cdr.py``, one copy of the buffer), which rclpy publishes as they are.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mtl_perception.inference.frame_pipeline import FrameOutputs
from mtl_perception.ros.cdr import image_cdr
from mtl_perception.ros.pointcloud import points_message

# Which network task each output needs; depth_camera_info and points also need camera info.
OUTPUT_TASKS: dict[str, tuple[str, ...]] = {
    "depth": ("depth",),
    "depth_camera_info": ("depth",),
    "depth_color": ("depth",),
    "semantic": ("semantic",),
    "semantic_color": ("semantic",),
    "semantic_overlay": ("semantic",),
    "normals": ("normals",),
    "points": ("depth",),
}
NEEDS_CAMERA_INFO = ("depth_camera_info", "points")
# node output -> (deploy graph output, message encoding); depth_camera_info is the scaled camera info
IMAGE_OUTPUTS: dict[str, tuple[str, str]] = {
    "depth": ("depth", "32FC1"),
    "depth_color": ("depth_color", "bgr8"),
    "semantic": ("labels", "mono8"),
    "semantic_color": ("semantic_color", "bgr8"),
    "semantic_overlay": ("semantic_overlay", "bgr8"),
    "normals": ("normals", "32FC3"),
}
_BYTES_PER_PIXEL = {"32FC1": 4, "32FC3": 12, "bgr8": 3, "mono8": 1}


def wanted_outputs(enabled: dict[str, bool], subscribers: dict[str, int], model_tasks: list[str], has_camera_info: bool) -> set[str]:
    """Outputs to compute: enabled, subscribed, producible by the model, with camera info where needed."""
    wanted = set()
    for key, on in enabled.items():
        if not on or subscribers.get(key, 0) <= 0:
            continue
        if key in NEEDS_CAMERA_INFO and not has_camera_info:
            continue
        if not all(task in model_tasks for task in OUTPUT_TASKS[key]):
            continue
        wanted.add(key)
    return wanted


def graph_outputs(wanted: set[str]) -> set[str]:
    """The deploy graph outputs the wanted node outputs are made of."""
    names = {IMAGE_OUTPUTS[key][0] for key in wanted if key in IMAGE_OUTPUTS}
    if "points" in wanted:
        names.add("points")
    if "depth_camera_info" in wanted and not names:
        names.add("depth")  # the camera info goes with a depth image: compute the cheapest output
    return names


def image_message(pixels: np.ndarray, encoding: str, header: Any) -> bytes:
    """A serialised sensor_msgs/Image of a graph buffer already in ``encoding``'s layout (one copy of its bytes)."""
    return image_cdr(pixels, encoding, header, _BYTES_PER_PIXEL[encoding])


def build_messages(wanted: set[str], result: FrameOutputs, header: Any, points_organized: bool) -> dict[str, Any]:
    """Message per wanted output key from the buffers of one frame: serialised bytes, or a CameraInfo."""
    arrays = result.arrays
    messages: dict[str, Any] = {}
    for key, (name, encoding) in IMAGE_OUTPUTS.items():
        if key in wanted and name in arrays:
            messages[key] = image_message(arrays[name], encoding, header)
    if result.geometry is not None:
        if "depth_camera_info" in wanted:
            info = result.geometry.info_at_output
            info.header = header  # published at once by this thread: the cached message is safe to restamp
            messages["depth_camera_info"] = info
        if "points" in wanted and "points_xyz" in arrays:
            messages["points"] = points_message(arrays["points_xyz"], arrays["points_extra"], header, points_organized)
    return messages
