"""The settings of a bag evaluation (one dataclass, picklable for the worker processes)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mtl_perception.bags.conventions import PREDICTION_NAMESPACE


@dataclass
class BagEvalSettings:
    """Everything one bag evaluation needs (picklable, so worker processes receive it whole)."""

    model: str | None = None  # model file for the backend; None = predictions from the bag
    backend: str = "onnxruntime"
    backend_options: dict[str, Any] = field(default_factory=dict)
    predictions_from_bag: bool = False
    image_topic: str | None = None
    all_cameras: bool = False  # evaluate every camera stream of each bag on its own (several cameras in one bag)
    camera_info_topic: str | None = None
    gt_topics: dict[str, str | None] = field(default_factory=dict)  # task -> topic (None = guess)
    prediction_namespace: str = PREDICTION_NAMESPACE
    outputs_root: str = ""  # topics under it are node outputs, never camera or ground truth (set per camera by all_cameras)
    prediction_topics: dict[str, str | None] = field(default_factory=dict)
    classes_topic: str | None = None
    tolerance_s: float = 0.01  # stamp matching tolerance, seconds
    resize_mode: str = "letterbox"  # as the node's processing.resize_mode
    rescale_for_camera: bool = True  # as the node's depth.rescale_for_camera
    min_depth: float = 1e-3  # ground truth outside [min_depth, max_depth] metres is not scored
    max_depth: float = math.inf
    max_frames: int | None = None
    only_stamps: frozenset[int] | None = None  # evaluate only frames with these header stamps (ns)
    strip_frames: int = 4  # frames shown in the picture strip
    output_bag: str | None = None  # write predictions (plus camera and ground truth) to this bag
    output_storage: str | None = None  # sqlite3 | mcap; None = the input bag's storage
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> "BagEvalSettings":
        if (self.model is None) == (not self.predictions_from_bag):
            raise ValueError("give either --model MODEL (run a model on the camera frames) or --predictions-from-bag "
                             "(score prediction topics already in the bag), not both or neither")
        if self.tolerance_s < 0:
            raise ValueError(f"--stamp-tolerance must be non-negative, got {self.tolerance_s}")
        if self.all_cameras and (self.image_topic or self.camera_info_topic or any(self.gt_topics.values())):
            raise ValueError("--all-cameras guesses each camera's topics: do not name --image-topic, "
                             "--camera-info-topic or --gt-*-topic with it")
        if self.all_cameras and any(self.prediction_topics.values()):
            raise ValueError("--all-cameras reads each camera's predictions under --prediction-namespace/<camera>: "
                             "do not name --pred-*-topic with it")
        if self.output_bag and self.predictions_from_bag:
            raise ValueError("--output-bag needs --model: with --predictions-from-bag the predictions are already "
                             "in a bag")
        return self
