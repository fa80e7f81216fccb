"""Predictions of one frame -> the node's output messages (only those someone wants).

Every message carries the input frame's header. Colour images are bgr8; ``depth`` is 32FC1 metres with
NaN where there is no estimate (REP-118); ``normals`` is 32FC3 unit vectors in the camera optical frame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mtl_perception.colorize import colorize_depth, colorize_labels, overlay, rgb_to_bgr
from mtl_perception.inference.processing import Predictions
from mtl_perception.ros.image_codec import array_to_image_msg
from mtl_perception.ros.pointcloud import depth_to_pointcloud

# Which network task each output needs; depth_camera_info and points also need camera info.
OUTPUT_TASKS: dict[str, tuple[str, ...]] = {
    "depth": ("depth",),
    "depth_camera_info": ("depth",),
    "depth_color": ("depth",),
    "semantic": ("semantic",),
    "semantic_color": ("semantic",),
    "semantic_overlay": ("semantic",),
    "normals": ("normals",),
    "points": ("depth", "semantic"),
}
NEEDS_CAMERA_INFO = ("depth_camera_info", "points")


@dataclass
class OutputOptions:
    """The run-time settings the encoders read."""

    depth_min: float  # metres; smaller depth becomes NaN
    depth_max: float  # metres; larger depth becomes NaN
    overlay_alpha: float
    points_stride: int
    points_organized: bool
    palette: np.ndarray  # (K, 3) uint8 RGB


def wanted_outputs(enabled: dict[str, bool], subscribers: dict[str, int], model_tasks: list[str], has_camera_info: bool) -> set[str]:
    """Outputs to compute: enabled, subscribed, producible by the model, with camera info where needed."""
    wanted = set()
    for key, on in enabled.items():
        if not on or subscribers.get(key, 0) <= 0:
            continue
        if key in NEEDS_CAMERA_INFO and not has_camera_info:
            continue
        if key != "points" and not all(task in model_tasks for task in OUTPUT_TASKS[key]):
            continue
        if key == "points" and "depth" not in model_tasks:
            continue
        wanted.add(key)
    return wanted


def tasks_for(outputs: set[str], model_tasks: list[str]) -> set[str]:
    """Network tasks whose post-processing the wanted outputs need."""
    return {task for key in outputs for task in OUTPUT_TASKS[key] if task in model_tasks}


def clip_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 depth with NaN outside [lo, hi] and wherever it is not finite and positive."""
    out = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0) & (out >= lo) & (out <= hi))] = np.nan
    return out


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The camera image at the output size (height, width); area filter when shrinking."""
    if rgb.shape[:2] == size:
        return rgb
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def build_messages(
    wanted: set[str],
    predictions: Predictions,
    rgb: np.ndarray,
    options: OutputOptions,
    header: Any,
    scaled_info: Any | None,
) -> dict[str, Any]:
    """Message per wanted output key. ``rgb`` is the camera image (any size: resized to the outputs)."""
    messages: dict[str, Any] = {}
    depth = clip_depth(predictions.depth, options.depth_min, options.depth_max) if predictions.depth is not None else None
    size = next(a.shape[:2] for a in (predictions.depth, predictions.labels, predictions.normals) if a is not None)
    if depth is not None:
        if "depth" in wanted:
            messages["depth"] = array_to_image_msg(depth, "32FC1", header)
        if "depth_color" in wanted:
            colour = colorize_depth(depth, options.depth_min, options.depth_max)
            messages["depth_color"] = array_to_image_msg(rgb_to_bgr(colour), "bgr8", header)
        if "depth_camera_info" in wanted and scaled_info is not None:
            info = scaled_info
            info.header = header
            messages["depth_camera_info"] = info
    label_colours = None
    labels = predictions.labels
    if labels is not None:
        if "semantic" in wanted:
            messages["semantic"] = array_to_image_msg(labels, "mono8", header)
        if wanted & {"semantic_color", "semantic_overlay", "points"}:
            label_colours = colorize_labels(labels, options.palette)
        if "semantic_color" in wanted:
            messages["semantic_color"] = array_to_image_msg(rgb_to_bgr(label_colours), "bgr8", header)
        if "semantic_overlay" in wanted:
            blended = overlay(resize_rgb(rgb, size), label_colours, options.overlay_alpha, valid=labels < len(options.palette))
            messages["semantic_overlay"] = array_to_image_msg(rgb_to_bgr(blended), "bgr8", header)
    if predictions.normals is not None and "normals" in wanted:
        messages["normals"] = array_to_image_msg(np.ascontiguousarray(predictions.normals, dtype=np.float32), "32FC3", header)
    if "points" in wanted and depth is not None and scaled_info is not None:
        colours = label_colours if label_colours is not None else resize_rgb(rgb, size)
        messages["points"] = depth_to_pointcloud(
            depth, np.asarray(scaled_info.k).reshape(3, 3), colours, labels, options.points_stride, header, options.points_organized
        )
    return messages


def class_table_json(class_names: list[str], palette: np.ndarray, ignore_index: int, model_sha256: str) -> str:
    """The class table published on ``semantic/classes``: JSON with names, RGB colours and ids."""
    return json.dumps(
        {
            "classes": [{"id": i, "name": name, "color": [int(c) for c in palette[i]]} for i, name in enumerate(class_names)],
            "ignore_index": ignore_index,
            "encoding": "semantic (mono8) pixel value = class id",
            "model_sha256": model_sha256,
        }
    )
