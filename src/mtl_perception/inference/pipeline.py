"""The per-frame pipeline shared by the ROS node and offline evaluation: RGB frame -> predictions.

preprocess (resize + normalise) -> backend inference -> postprocess (back to the output size) -> metric
depth rescaled to this camera's focal length when it is known. One function, so that what the node
publishes and what ``bag-eval`` scores for the same frame are computed the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.processing import Predictions, postprocess, preprocess, rescale_depth_for_camera

STAGES = ("preprocess", "infer", "postprocess")

InferFn = Callable[[np.ndarray], Mapping[str, np.ndarray] | None]


@dataclass
class FrameResult:
    """Predictions of one frame (None when inference gave nothing) and the seconds of each stage."""

    predictions: Predictions | None
    seconds: dict[str, float] = field(default_factory=dict)


def run_frame(rgb: np.ndarray, meta: ModelMetadata, infer: InferFn, *, resize_mode: str = "letterbox",
              out_size: str = "input", camera_focal: tuple[float, float] | None = None, rescale_for_camera: bool = True,
              tasks: Sequence[str] | None = None, confidence: bool = True) -> FrameResult:
    """Run the pipeline on one uint8 RGB frame.

    ``infer`` maps a preprocessed batch to backend outputs (or None after a failure it has reported).
    ``camera_focal`` is (fx, fy) of the camera at this frame's size; with ``rescale_for_camera`` the
    depth follows the camera's focal length as the model metadata asks. ``tasks`` and ``confidence``
    limit the postprocessing to what the caller uses.
    """
    start = time.perf_counter()
    batch, transform = preprocess(rgb, meta, resize_mode)
    preprocessed = time.perf_counter()
    outputs = infer(batch)
    inferred = time.perf_counter()
    seconds = {"preprocess": preprocessed - start, "infer": inferred - preprocessed}
    if outputs is None:
        return FrameResult(None, seconds)
    predictions = postprocess(outputs, meta, transform, out_size, tasks=tasks, confidence=confidence)
    if predictions.depth is not None and camera_focal is not None and rescale_for_camera:
        focal = transform.focal_at_model_input(*camera_focal)
        predictions.depth = rescale_depth_for_camera(predictions.depth, focal, meta)
    seconds["postprocess"] = time.perf_counter() - inferred
    seconds["total"] = time.perf_counter() - start
    return FrameResult(predictions, seconds)
