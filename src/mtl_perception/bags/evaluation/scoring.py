"""Scoring one bag: dataset-level metric states, per-frame figures, temporal stability and latency statistics."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mtl_perception.bags.evaluation.ground_truth import fit_to
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.metrics import NormalsMetrics, TaskMetrics, new_accumulator
from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC

PER_FRAME_KEYS = {DEPTH: ("abs_rel", "rmse", "delta1"), SEMANTIC: ("miou", "pixel_acc"), NORMALS: ("mean", "median")}
STABILITY_KEYS = {DEPTH: "depth_rel_change", SEMANTIC: "label_flip_fraction", NORMALS: "normal_change_deg"}


@dataclass
class FrameRecord:
    """Per-frame figures, for plots over time."""

    index: int
    stamp_ns: int
    metrics: dict[str, float] = field(default_factory=dict)  # "depth/abs_rel" -> value (frames with ground truth)
    stability: dict[str, float] = field(default_factory=dict)  # change from the previous frame
    latency: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def task_accumulator(task: str, settings: BagEvalSettings, class_names: Sequence[str],
                     ignore_index: int) -> TaskMetrics:
    """The metrics accumulator of one task under the evaluation's depth range and class set."""
    return new_accumulator(task, len(class_names), ignore_index, list(class_names), settings.min_depth,
                           settings.max_depth)


def depth_pair(prediction: np.ndarray, truth: np.ndarray,
               settings: BagEvalSettings) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(prediction, ground truth) with pixels lacking an estimate removed from the ground truth, and the counts
    (valid ground-truth pixels, of which with a finite prediction)."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(truth) & (truth > 0) & (truth >= settings.min_depth) & (truth <= settings.max_depth)
    estimated = np.isfinite(prediction)
    truth = np.where(estimated, truth, np.nan).astype(np.float32)
    prediction = np.where(estimated, prediction, 1.0).astype(np.float32)
    return prediction, truth, int(valid.sum()), int((valid & estimated).sum())


def stability(task: str, previous: np.ndarray, current: np.ndarray) -> float:
    """Change of one prediction between consecutive frames (NaN when nothing comparable)."""
    if previous.shape != current.shape:
        return math.nan
    if task == DEPTH:
        with np.errstate(invalid="ignore", divide="ignore"):
            both = np.isfinite(previous) & np.isfinite(current) & (previous > 0)
            return float(np.mean(np.abs(current[both] - previous[both]) / previous[both])) if both.any() else math.nan
    if task == SEMANTIC:
        return float(np.mean(previous != current))
    both = (np.abs(previous).sum(axis=-1) > 0) & (np.abs(current).sum(axis=-1) > 0)
    both &= np.isfinite(previous).all(axis=-1) & np.isfinite(current).all(axis=-1)
    if not both.any():
        return math.nan
    angles = NormalsMetrics.angular_error(current[both].astype(np.float64), previous[both].astype(np.float64))
    return float(np.mean(angles))


class Scorer:
    """Dataset-level accumulators, per-frame figures and temporal stability of one bag."""

    def __init__(self, tasks: Sequence[str], settings: BagEvalSettings, class_names: Sequence[str],
                 ignore_index: int) -> None:
        self.settings, self.class_names, self.ignore_index = settings, list(class_names), ignore_index
        self.accumulators = {task: self._new(task) for task in tasks}
        self.frames_with_gt: dict[str, int] = {}
        self.depth_pixels = [0, 0]  # valid ground-truth pixels, of those with an estimate
        self.previous: dict[str, np.ndarray] = {}

    def _new(self, task: str) -> TaskMetrics:
        return task_accumulator(task, self.settings, self.class_names, self.ignore_index)

    def score(self, record: FrameRecord, maps: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> None:
        """Add one frame to the accumulators and put its own figures in ``record.metrics``."""
        for task, accumulator in self.accumulators.items():
            if task not in maps or task not in truth:
                continue
            predicted, target = fit_to(maps[task], truth[task].shape[:2]), truth[task]
            if task == DEPTH:
                predicted, target, valid, covered = depth_pair(predicted, target, self.settings)
                self.depth_pixels[0] += valid
                self.depth_pixels[1] += covered
            extra = {"channel_axis": -1} if task == NORMALS else {}
            frame_metrics = self._new(task)
            for part in (accumulator, frame_metrics):
                part.update(predicted, target, **extra)
            values = frame_metrics.compute()
            record.metrics.update({f"{task}/{key}": float(values[key]) for key in PER_FRAME_KEYS[task]})
            self.frames_with_gt[task] = self.frames_with_gt.get(task, 0) + 1

    def track(self, record: FrameRecord, maps: dict[str, np.ndarray]) -> None:
        """Change of each prediction since the previous frame, into ``record.stability``."""
        for task, value in maps.items():
            if task in self.previous:
                record.stability[STABILITY_KEYS[task]] = stability(task, self.previous[task], value)
            self.previous[task] = value

    def states(self) -> dict[str, np.ndarray]:
        return {task: part.state() for task, part in self.accumulators.items() if self.frames_with_gt.get(task)}
