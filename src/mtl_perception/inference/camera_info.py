"""sensor_msgs/CameraInfo validation and scaling to the node's output resolution."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np


class CameraInfoError(ValueError):
    """A CameraInfo message cannot describe the image; the message says what is wrong and how to fix it."""


def validate_camera_info(info: Any) -> None:
    """Raise CameraInfoError unless ``info`` describes a camera the package can use (``schemas.CameraInfoSchema``).

    A positive size; K and P finite; K's focal lengths positive and, like P's where P is set, within
    [0.01, 1000] x the image width (fx) or height (fy): fields of view between 0.06 and 178 degrees. A
    focal length of 1e-30 or 1e30 would turn every depth into NaN or infinity without a word.
    """
    from pydantic import ValidationError

    from mtl_perception.schemas import CameraInfoSchema, describe_errors

    try:
        width, height = int(info.width), int(info.height)
    except (TypeError, ValueError, AttributeError):
        raise CameraInfoError("camera_info has no integer width and height; publish a sensor_msgs/CameraInfo") from None
    if width <= 0 or height <= 0:
        raise CameraInfoError(f"camera_info has size {width}x{height}; the camera driver must fill width and height (calibrate the camera)")
    try:
        CameraInfoSchema.model_validate({"width": width, "height": height, "k": [float(v) for v in info.k], "p": [float(v) for v in info.p]})
    except ValidationError as exc:
        raise CameraInfoError(describe_errors(exc, label="camera_info ", show_input=False)) from None
    except (TypeError, ValueError):
        raise CameraInfoError("camera_info K or P holds values that are not numbers; publish a sensor_msgs/CameraInfo") from None


def image_size(info: Any) -> tuple[int, int]:
    """(width, height) of the images this camera info describes, after binning and region of interest."""
    bin_x, bin_y = max(int(info.binning_x), 1), max(int(info.binning_y), 1)
    roi = info.roi
    width = int(roi.width) if int(roi.width) > 0 else int(info.width)
    height = int(roi.height) if int(roi.height) > 0 else int(info.height)
    return width // bin_x, height // bin_y


def scale_camera_info(info: Any, out_width: int, out_height: int) -> Any:
    """A copy of ``info`` describing the same camera at ``out_width`` x ``out_height``.

    Binning and region of interest are folded into the intrinsics first (the result has neither).
    Pixel centres are kept aligned the way ``cv2.resize`` maps them: c' = (c + 0.5) * s - 0.5,
    f' = f * s, with s = output size / image size per axis. D and R are unchanged.
    """
    validate_camera_info(info)
    if out_width <= 0 or out_height <= 0:
        raise CameraInfoError(f"cannot scale camera_info to {out_width}x{out_height}")
    bin_x, bin_y = max(int(info.binning_x), 1), max(int(info.binning_y), 1)
    off_x, off_y = float(info.roi.x_offset), float(info.roi.y_offset)
    in_width, in_height = image_size(info)
    sx, sy = out_width / in_width, out_height / in_height

    def axis(focal: float, centre: float, offset: float, binning: int, scale: float) -> tuple[float, float]:
        # full-resolution pixel -> binned ROI pixel -> resized pixel (pixel-centre aligned)
        f_img = focal / binning
        c_img = (centre - offset + 0.5) / binning - 0.5
        return f_img * scale, (c_img + 0.5) * scale - 0.5

    out = copy.deepcopy(info)
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3).copy()
    k[0, 0], k[0, 2] = axis(k[0, 0], k[0, 2], off_x, bin_x, sx)
    k[1, 1], k[1, 2] = axis(k[1, 1], k[1, 2], off_y, bin_y, sy)
    k[0, 1] *= sx / bin_x
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4).copy()
    if p[0, 0] > 0.0 and p[1, 1] > 0.0:
        tx_over_fx, ty_over_fy = p[0, 3] / p[0, 0], p[1, 3] / p[1, 1]
        p[0, 0], p[0, 2] = axis(p[0, 0], p[0, 2], off_x, bin_x, sx)
        p[1, 1], p[1, 2] = axis(p[1, 1], p[1, 2], off_y, bin_y, sy)
        p[0, 1] *= sx / bin_x
        p[0, 3], p[1, 3] = tx_over_fx * p[0, 0], ty_over_fy * p[1, 1]
    else:  # no rectified projection: use K's intrinsics
        p[:, :3] = k
        p[:, 3] = 0.0
    out.k = k.reshape(-1).tolist()
    out.p = p.reshape(-1).tolist()
    out.width, out.height = int(out_width), int(out_height)
    out.binning_x = out.binning_y = 0
    out.roi.x_offset = out.roi.y_offset = out.roi.width = out.roi.height = 0
    out.roi.do_rectify = False
    return out


def intrinsics(info: Any) -> np.ndarray:
    """The 3x3 K matrix of a (validated) camera info as float64."""
    return np.asarray(info.k, dtype=np.float64).reshape(3, 3)
