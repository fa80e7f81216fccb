"""The node's per-frame pipeline as a plain function: camera pixels -> the predictions it would publish.

The node's pipeline (``inference.pipeline.run_frame``) with its defaults: letterbox, outputs at the
camera resolution, depth rescaled to the camera's focal length when camera info is present, and NaN
outside the model's depth range (what the node publishes on ``depth``). Offline
evaluation therefore scores exactly what the node would have published for the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtl_perception.inference.pipeline import run_frame
from mtl_perception.inference.processing import Predictions
from mtl_perception.ros.camera_info import CameraInfoError, image_size, scale_camera_info
from mtl_perception.ros.outputs import clip_depth


@dataclass
class TimedPredictions:
    """Predictions of one frame and the seconds each stage took."""

    predictions: Predictions
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds, plus "total"


class ModelPredictor:
    """Runs a backend on camera frames the way the node does (see the module docstring)."""

    def __init__(self, backend: Any, resize_mode: str = "letterbox", rescale_for_camera: bool = True,
                 depth_min: float = 0.0, depth_max: float = 0.0) -> None:
        self.backend = backend
        self.meta = backend.metadata
        self.resize_mode = resize_mode
        self.rescale_for_camera = rescale_for_camera
        self.depth_min = depth_min or self.meta.depth_min
        self.depth_max = depth_max or self.meta.depth_max
        if self.depth_min >= self.depth_max:
            self.depth_min, self.depth_max = self.meta.depth_min, self.meta.depth_max

    @property
    def tasks(self) -> list[str]:
        return list(self.meta.tasks)

    def predict(self, rgb: np.ndarray, camera_info: Any | None = None) -> TimedPredictions:
        """Predictions for one uint8 RGB frame; ``camera_info`` (a CameraInfo of this camera) enables depth rescaling."""
        info = self._scaled_info(camera_info, rgb)
        focal = (info.k[0], info.k[4]) if info is not None else None
        result = run_frame(rgb, self.meta, self.backend.infer, resize_mode=self.resize_mode, camera_focal=focal,
                           rescale_for_camera=self.rescale_for_camera)
        predictions = result.predictions
        if predictions.depth is not None:
            predictions.depth = clip_depth(predictions.depth, self.depth_min, self.depth_max)
        return TimedPredictions(predictions, result.seconds)

    @staticmethod
    def _scaled_info(camera_info: Any | None, rgb: np.ndarray) -> Any | None:
        """Camera info at the frame's size; None when absent, invalid or describing another size (as the node does)."""
        try:
            if camera_info is None or image_size(camera_info) != (rgb.shape[1], rgb.shape[0]):
                return None
            return scale_camera_info(camera_info, rgb.shape[1], rgb.shape[0])
        except CameraInfoError:
            return None
