"""Evaluate predictions on rosbag2 bags: every metric, latency, temporal stability, an optional prediction bag.

Predictions come from one of two sources, scored by the same code:
- a model (``settings.model``): each camera frame runs through the node's per-frame pipeline
  (``inference.frame_pipeline.FramePipeline``, the same deploy graph with the node's defaults), timed;
- the bag itself (``settings.predictions_from_bag``): prediction topics such as the node's recorded
  outputs (latency = log time of the prediction - log time of its camera frame in the bag).

Ground truth (depth, labels, normals) is matched to each frame by header stamp within a tolerance.
Depth pixels without an estimate (NaN, e.g. outside the model's range) are left out of the depth metrics
and reported as ``depth coverage``. Temporal stability needs no ground truth: the change of each
prediction between consecutive frames (relative depth change, fraction of labels that flip, normal
rotation in degrees). Several bags run in parallel processes; their metric states add up exactly.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from mtl_perception.bags import messages
from mtl_perception.bags.conventions import (
    DEPTH_COLOR_NAME,
    IMAGE_TYPE,
    PREDICTION_NAMESPACE,
    SEMANTIC_OVERLAY_NAME,
    STRING_TYPE,
    TASK_TOPICS,
    classes_topic,
    join_topic,
    task_topic,
)
from mtl_perception.bags.frames import MatchedFrame, plan_frames, stream_frames
from mtl_perception.bags.io import BagReader, BagWriter
from mtl_perception.bags.topics import TopicChoice, choose_topics
from mtl_perception.colorize import colorize_depth, colorize_labels, overlay, palette_from_sequence
from mtl_perception.evaluation.contact_sheet import Panel
from mtl_perception.evaluation.metrics import DepthMetrics, NormalsMetrics, SemanticMetrics, flatten_metrics
from mtl_perception.inference.frame_pipeline import FramePipeline, FrameSettings
from mtl_perception.inference.processing import to_rgb
from mtl_perception.inference.camera_info import CameraInfoError
from mtl_perception.ros.image_codec import ImageDecodeError
from mtl_perception.tasks import ALL_TASKS, DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC

PER_FRAME_KEYS = {DEPTH: ("abs_rel", "rmse", "delta1"), SEMANTIC: ("miou", "pixel_acc"), NORMALS: ("mean", "median")}
STABILITY_KEYS = {DEPTH: "depth_rel_change", SEMANTIC: "label_flip_fraction", NORMALS: "normal_change_deg"}
STRIP_WIDTH = 320  # pixels per strip tile (frames are shrunk to this width)


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
            raise ValueError("--all-cameras guesses each camera's topics: do not name --image-topic, --camera-info-topic or --gt-*-topic with it")
        if self.all_cameras and self.predictions_from_bag:
            raise ValueError("--all-cameras needs --model: recorded predictions name no camera")
        if self.output_bag and self.predictions_from_bag:
            raise ValueError("--output-bag needs --model: with --predictions-from-bag the predictions are already in a bag")
        return self


@dataclass
class FrameRecord:
    """Per-frame figures, for plots over time."""

    index: int
    stamp_ns: int
    metrics: dict[str, float] = field(default_factory=dict)  # "depth/abs_rel" -> value (frames with ground truth)
    stability: dict[str, float] = field(default_factory=dict)  # change from the previous frame
    latency: dict[str, float] = field(default_factory=dict)  # stage -> seconds


@dataclass
class BagResult:
    """Everything measured on one bag; metric states are additive across bags."""

    bag: str
    storage: str
    topics: TopicChoice
    tasks_predicted: list[str]
    class_names: list[str]
    palette: list[list[int]]
    ignore_index: int
    frames_planned: int = 0
    frames_evaluated: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> frames
    unmatched: dict[str, int] = field(default_factory=dict)  # role -> frames without a matching message
    states: dict[str, np.ndarray] = field(default_factory=dict)  # task -> metric accumulator state
    frames_with_gt: dict[str, int] = field(default_factory=dict)
    depth_pixels: tuple[int, int] = (0, 0)  # (valid ground-truth pixels, of those with a depth estimate)
    records: list[FrameRecord] = field(default_factory=list)
    latency_source: str = ""
    strip: list[list[Panel]] = field(default_factory=list)
    output_bag: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tasks_evaluated(self) -> list[str]:
        return [task for task in ALL_TASKS if task in self.states]


# ---------------------------------------------------------------------------------------------- decoding

def decode_depth(message: Any) -> np.ndarray:
    """Depth image -> float32 metres with NaN where invalid (32FC1 metres, 16UC1/mono16 millimetres, 0 = invalid)."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding == "32FC1":
        return pixels.astype(np.float32, copy=False)
    if encoding in ("16UC1", "mono16"):
        depth = pixels.astype(np.float32) * np.float32(0.001)
        depth[pixels == 0] = np.nan
        return depth
    raise ImageDecodeError(f"depth image has encoding '{encoding}'; expected 32FC1 (metres) or 16UC1 (millimetres)")


def decode_labels(message: Any) -> np.ndarray:
    """Label image (mono8/8UC1/16UC1 class ids) -> (H, W) integer ids."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding not in ("mono8", "8UC1", "16UC1", "mono16") or pixels.ndim != 2:
        raise ImageDecodeError(f"label image has encoding '{encoding}'; expected mono8 class ids")
    return pixels


def decode_normals(message: Any) -> np.ndarray:
    """Normals image (32FC3) -> float32 (H, W, 3)."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding != "32FC3":
        raise ImageDecodeError(f"normals image has encoding '{encoding}'; expected 32FC3 unit vectors")
    return pixels.astype(np.float32, copy=False)


DECODERS = {DEPTH: decode_depth, SEMANTIC: decode_labels, NORMALS: decode_normals}


def predictions_from_messages(found: dict[str, Any]) -> dict[str, np.ndarray]:
    """task -> map decoded from prediction-topic messages (depth 32FC1, semantic mono8, normals 32FC3)."""
    return {task: DECODERS[task](message) for task, message in found.items() if task in DECODERS}


# task -> the deploy graph output that is its prediction map; the pictures the output bag carries
GRAPH_MAPS = {DEPTH: "depth", SEMANTIC: "labels", NORMALS: "normals"}
PICTURES = {DEPTH: ("depth_color", DEPTH_COLOR_NAME), SEMANTIC: ("semantic_overlay", SEMANTIC_OVERLAY_NAME)}


def fit_to(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A prediction map at the ground truth's (height, width), by nearest-neighbour resizing."""
    if prediction.shape[:2] == size:
        return prediction
    return cv2.resize(prediction, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


# ---------------------------------------------------------------------------------------------- figures

def new_accumulator(task: str, settings: BagEvalSettings, class_names: Sequence[str], ignore_index: int) -> Any:
    """The metrics accumulator of one task."""
    if task == DEPTH:
        return DepthMetrics(settings.min_depth, settings.max_depth)
    if task == SEMANTIC:
        return SemanticMetrics(len(class_names), ignore_index, list(class_names))
    return NormalsMetrics()


def depth_pair(prediction: np.ndarray, truth: np.ndarray, settings: BagEvalSettings) -> tuple[np.ndarray, np.ndarray, int, int]:
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
    return float(np.mean(NormalsMetrics.angular_error(current[both].astype(np.float64), previous[both].astype(np.float64))))


def latency_stats(samples: Sequence[float]) -> dict[str, float]:
    """Milliseconds: count, mean, std, min, p50, p90, p99, max of latency samples given in seconds."""
    values = np.asarray([s for s in samples if s is not None and math.isfinite(s)], dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"count": 0}
    return {
        "count": int(values.size), "mean_ms": float(values.mean()), "std_ms": float(values.std()),
        "min_ms": float(values.min()), "p50_ms": float(np.percentile(values, 50)), "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max()),
    }


def strip_row(rgb: np.ndarray, maps: dict[str, np.ndarray], palette: np.ndarray, depth_range: tuple[float, float],
              stamp_ns: int) -> list[Panel]:
    """input | semantic overlay | depth colour map of one frame, shrunk to the strip width."""
    scale = min(1.0, STRIP_WIDTH / rgb.shape[1])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    row: list[Panel] = [(f"input t={stamp_ns / 1e9:.2f}s", small)]
    if SEMANTIC in maps:
        labels = fit_to(maps[SEMANTIC], small.shape[:2])
        row.append(("semantic overlay", overlay(small, colorize_labels(labels, palette), 0.5, valid=labels < len(palette))))
    if DEPTH in maps:
        row.append(("depth", colorize_depth(fit_to(maps[DEPTH], small.shape[:2]), *depth_range)))
    return row


# ---------------------------------------------------------------------------------------------- one bag

class _OutputBag:
    """The optional output bag: copies of the inputs plus prediction topics on the input stamps."""

    def __init__(self, path: str, storage: str, overwrite: bool, reader: BagReader, copy_topics: list[str],
                 tasks: list[str], class_table: str) -> None:
        self.writer = BagWriter(path, storage, overwrite=overwrite)  # type: ignore[arg-type]
        self.tasks = tasks
        for topic in copy_topics:
            self.writer.add_topic(topic, reader.topics[topic].msgtype)
        for task in tasks:
            self.writer.add_topic(task_topic(PREDICTION_NAMESPACE, task), IMAGE_TYPE)
        self.pictures = []
        if DEPTH in tasks:
            self.pictures.append(join_topic(PREDICTION_NAMESPACE, DEPTH_COLOR_NAME))
        if SEMANTIC in tasks:
            self.pictures.append(join_topic(PREDICTION_NAMESPACE, SEMANTIC_OVERLAY_NAME))
        for topic in self.pictures:
            self.writer.add_topic(topic, IMAGE_TYPE)
        self.class_table = class_table
        self.classes_written = False
        if SEMANTIC in tasks:
            self.writer.add_topic(classes_topic(PREDICTION_NAMESPACE), STRING_TYPE)

    def copy(self, topic: str, log_time: int, raw: bytes) -> None:
        self.writer.write_raw(topic, log_time, raw)

    def write(self, frame: MatchedFrame, maps: dict[str, np.ndarray], pictures: dict[str, np.ndarray], latency_s: float) -> None:
        """The prediction maps and the graph's colour pictures (bgr8) of one frame, on its stamp."""
        header = frame.camera.header
        stamp = messages.stamp_to_ns(header.stamp)
        log_time = (frame.camera_log_ns or stamp) + int(round(latency_s * 1e9))
        frame_id = str(header.frame_id)
        if SEMANTIC in self.tasks and not self.classes_written:
            self.writer.write(classes_topic(PREDICTION_NAMESPACE), log_time, messages.string_message(self.class_table))
            self.classes_written = True
        for task in self.tasks:
            if task in maps:
                self.writer.write(task_topic(PREDICTION_NAMESPACE, task), log_time, messages.image_message(maps[task], TASK_TOPICS[task][1], stamp, frame_id))
        for task, (name, topic) in PICTURES.items():
            if name in pictures:
                self.writer.write(join_topic(PREDICTION_NAMESPACE, topic), log_time, messages.image_message(pictures[name], "bgr8", stamp, frame_id))


def _class_set(pipeline: FramePipeline | None, plan_classes: str | None, choice: TopicChoice, notes: list[str]) -> tuple[list[str], list[list[int]], int]:
    """Class names, palette and ignore id: the model's, else the bag's class table."""
    table = messages.parse_class_table(plan_classes, choice.classes or "") if plan_classes else None
    if pipeline is not None:
        meta = pipeline.metadata
        names, palette = list(meta.class_names), [list(c) for c in meta.palette]
        if table and table[0] != names:
            if len(table[0]) > len(names):
                raise ValueError(f"the bag's ground-truth classes {table[0]} outnumber the model's {names}; "
                                 "evaluate with a model trained on the bag's class set")
            notes.append(f"the bag's class table {table[0]} differs from the model's classes {names}; scored by class id")
        return names, palette, int(meta.ignore_index)
    if table:
        return table
    return [], [], IGNORE_INDEX


def evaluate_bag(path: str | os.PathLike, settings: BagEvalSettings) -> BagResult:
    """Evaluate one bag (see the module docstring); raises BagError/ValueError with a one-line reason."""
    settings.validate()
    bag_path = Path(path)
    pipeline = None
    if settings.model is not None:
        pipeline = FramePipeline(settings.model, settings.backend, settings.backend_options,
                                 FrameSettings(resize_mode=settings.resize_mode, rescale_for_camera=settings.rescale_for_camera))
    try:
        with BagReader(bag_path) as reader:
            return _evaluate_open_bag(reader, settings, pipeline)
    finally:
        if pipeline is not None:
            pipeline.close()


class _Scorer:
    """Dataset-level accumulators, per-frame figures and temporal stability of one bag."""

    def __init__(self, tasks: Sequence[str], settings: BagEvalSettings, class_names: Sequence[str], ignore_index: int) -> None:
        self.settings, self.class_names, self.ignore_index = settings, list(class_names), ignore_index
        self.accumulators = {task: self._new(task) for task in tasks}
        self.frames_with_gt: dict[str, int] = {}
        self.depth_pixels = [0, 0]  # valid ground-truth pixels, of those with an estimate
        self.previous: dict[str, np.ndarray] = {}

    def _new(self, task: str) -> Any:
        return new_accumulator(task, self.settings, self.class_names, self.ignore_index)

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


def _predict(pipeline: FramePipeline, frame: MatchedFrame, choice: TopicChoice, outputs: set[str],
             record: FrameRecord) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(task -> prediction map, graph pictures) of one camera frame through the pipeline; timing into ``record``."""
    if frame.camera is None:
        raise ImageDecodeError("no camera message for this frame")
    start = time.perf_counter()
    pixels, encoding = messages.decode_image(frame.camera, choice.camera_type)
    decoded = time.perf_counter()
    try:
        result = pipeline.run(pixels, encoding, outputs, frame.camera_info)
    except CameraInfoError:  # camera info of another size or invalid: the frame is served without it, as the node does
        result = pipeline.run(pixels, encoding, outputs, None)
    seconds = result.seconds  # a graph built for this frame is set-up, not latency
    record.latency = {"decode": decoded - start, "graph": seconds["graph"], "total": decoded - start + seconds["prepare"] + seconds["graph"]}
    maps = {task: result.arrays[name] for task, name in GRAPH_MAPS.items() if name in result.arrays}
    return maps, {name: result.arrays[name] for name, _ in PICTURES.values() if name in result.arrays}


def _frame_inputs(frame: MatchedFrame, choice: TopicChoice, pipeline: FramePipeline | None, outputs: set[str],
                  record: FrameRecord) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(prediction maps, graph pictures, ground truth) of one frame; latency into ``record``. ValueError when undecodable."""
    if pipeline is not None:
        maps, pictures = _predict(pipeline, frame, choice, outputs, record)
    else:
        maps, pictures = predictions_from_messages(frame.predictions), {}
        if frame.prediction_log_ns is not None and frame.camera_log_ns is not None:
            record.latency = {"total": (frame.prediction_log_ns - frame.camera_log_ns) / 1e9}
    truth = {task: DECODERS[task](message) for task, message in frame.ground_truth.items()}
    return maps, pictures, truth


def _camera_rgb(frame: MatchedFrame, choice: TopicChoice) -> np.ndarray | None:
    """The camera image as RGB (picture strip only), None without a camera message."""
    return to_rgb(*messages.decode_image(frame.camera, choice.camera_type)) if frame.camera is not None else None


def _strip_indices(count: int, wanted: int) -> set[int]:
    """Frame positions shown in the picture strip: ``wanted`` spread evenly over ``count`` frames."""
    if count == 0 or wanted <= 0:
        return set()
    return set(np.unique(np.linspace(0, count - 1, wanted).round().astype(int)).tolist())


def _evaluate_open_bag(reader: BagReader, settings: BagEvalSettings, pipeline: FramePipeline | None) -> BagResult:
    choice = choose_topics(
        reader, image_topic=settings.image_topic, camera_info_topic=settings.camera_info_topic,
        ground_truth=settings.gt_topics, predictions_from_bag=settings.predictions_from_bag,
        prediction_namespace=settings.prediction_namespace, prediction_topics=settings.prediction_topics,
        classes_topic_name=settings.classes_topic,
    )
    plan = plan_frames(reader, choice, int(round(settings.tolerance_s * 1e9)), settings.only_stamps, settings.max_frames)
    notes = list(choice.notes)
    class_names, palette_list, ignore_index = _class_set(pipeline, plan.classes_text, choice, notes)
    tasks_predicted = list(pipeline.metadata.tasks) if pipeline is not None else [t for t in ALL_TASKS if t in choice.predictions]
    scored = [t for t in tasks_predicted if t in choice.ground_truth]
    if SEMANTIC in scored and not class_names:
        raise ValueError(f"bag {reader.path} has no class table (std_msgs/String on .../semantic/classes) to name the semantic classes; "
                         "record the node's semantic/classes topic or name one with --classes-topic")
    palette = palette_from_sequence(palette_list or None, max(len(class_names), 1))
    depth_range = pipeline.depth_range if pipeline is not None else (0.1, 10.0)
    result = BagResult(str(reader.path), reader.storage, choice, tasks_predicted, class_names, palette.tolist(), ignore_index,
                       frames_planned=len(plan), unmatched=dict(plan.unmatched), notes=notes,
                       latency_source="model stages (wall clock)" if pipeline is not None else "bag log time of prediction - log time of its camera frame")
    scorer = _Scorer(scored, settings, class_names, ignore_index)
    strip_at = _strip_indices(len(plan), settings.strip_frames)
    output = None
    outputs = {GRAPH_MAPS[task] for task in tasks_predicted}
    if settings.output_bag and pipeline is not None:
        outputs |= {PICTURES[task][0] for task in tasks_predicted if task in PICTURES}
        table = messages.class_table(class_names, palette.tolist(), ignore_index) if class_names else ""
        output = _OutputBag(settings.output_bag, settings.output_storage or reader.storage, settings.overwrite, reader,
                            choice.topics(), tasks_predicted, table)
    frames = stream_frames(reader, plan, choice.topics() if output else (), output.copy if output else None)
    try:
        for frame in tqdm(frames, total=len(plan), desc=f"bag-eval {Path(reader.path).name}", unit="frame", disable=not settings.progress):
            record = FrameRecord(frame.index, frame.stamp_ns)
            try:
                maps, pictures, truth = _frame_inputs(frame, choice, pipeline, outputs, record)
                rgb = _camera_rgb(frame, choice) if frame.index in strip_at else None
            except ValueError as exc:  # ImageDecodeError included: count the frame as failed, go on
                reason = str(exc).split(";")[0]
                result.failures[reason] = result.failures.get(reason, 0) + 1
                continue
            scorer.score(record, maps, truth)
            scorer.track(record, maps)
            if rgb is not None:
                result.strip.append(strip_row(rgb, maps, palette, depth_range, frame.stamp_ns - plan.stamps[0]))
            if output is not None and frame.camera is not None:
                output.write(frame, maps, pictures, record.latency.get("total", 0.0))
            result.records.append(record)
            result.frames_evaluated += 1
    except BaseException:
        if output is not None:
            output.writer.abort()
        raise
    if output is not None:
        result.output_bag = str(output.writer.close())
    result.states, result.frames_with_gt = scorer.states(), scorer.frames_with_gt
    result.depth_pixels = (scorer.depth_pixels[0], scorer.depth_pixels[1])
    missing_gt = [t for t in scored if not result.frames_with_gt.get(t)]
    if missing_gt:
        notes.append(f"no frame had matching ground truth for {', '.join(missing_gt)} (stamp tolerance {settings.tolerance_s} s)")
    return result


# ---------------------------------------------------------------------------------------------- many bags

def output_bag_path(output: str | None, bag: str, many: bool) -> str | None:
    """With one bag, ``output`` is the output bag; with several, a folder holding one output per bag."""
    if not output:
        return None
    return str(Path(output) / f"{Path(bag).name}_predictions") if many else output


def evaluate_bags(paths: Sequence[str | os.PathLike], settings: BagEvalSettings, jobs: int = 1) -> list[BagResult]:
    """Evaluate several bags, in ``jobs`` parallel processes when more than one; results in input order."""
    settings.validate()
    names = [str(p) for p in paths]
    if not names:
        raise ValueError("give at least one bag")
    units = _evaluation_units(names, settings)
    names = [name for name, _ in units]
    many = len(units) > 1
    per_bag = [_for_bag(unit, output_bag_path(settings.output_bag, name + _camera_suffix(unit), many)) for name, unit in units]
    if jobs <= 1 or len(names) == 1:
        return [evaluate_bag(name, bag_settings) for name, bag_settings in zip(names, per_bag)]
    workers = min(jobs, len(names))
    options: dict[str, Any] = {}
    if settings.backend == "onnxruntime" and "intra_op_threads" not in settings.backend_options:
        options["intra_op_threads"] = max(1, (os.cpu_count() or 1) // workers)  # share the cores between workers
    per_bag = [_parallel(s, **options) for s in per_bag]
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked inference threads or locks
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(evaluate_bag, name, bag_settings) for name, bag_settings in zip(names, per_bag)]
        return [future.result() for future in futures]


def _evaluation_units(names: list[str], settings: BagEvalSettings) -> list[tuple[str, BagEvalSettings]]:
    """(bag, settings) of every evaluation: one per bag, or one per camera of each bag with ``all_cameras``."""
    if not settings.all_cameras:
        return [(name, settings) for name in names]
    from mtl_perception.bags.topics import camera_topics

    units = []
    for name in names:
        with BagReader(Path(name)) as reader:
            cameras = camera_topics(reader, settings.prediction_namespace)
        if not cameras:
            raise ValueError(f"bag {name} has no camera image topic to evaluate with --all-cameras")
        units += [(name, replace(settings, image_topic=camera, all_cameras=False)) for camera in cameras]
    return units


def _camera_suffix(settings: BagEvalSettings) -> str:
    """``_<camera>`` for an evaluation of one camera of several (output bag names), else ''."""
    from mtl_perception.bags.topics import camera_name

    name = camera_name(settings.image_topic) if settings.image_topic else ""
    return f"_{name}" if name else ""


def _for_bag(settings: BagEvalSettings, output: str | None) -> BagEvalSettings:
    return replace(settings, output_bag=output)


def _parallel(settings: BagEvalSettings, **options: Any) -> BagEvalSettings:
    """Settings for a worker process: extra backend options, no progress bar (bars of parallel workers interleave)."""
    return replace(settings, backend_options={**settings.backend_options, **options}, progress=False)


# ---------------------------------------------------------------------------------------------- summary

def _metrics_from_states(states: dict[str, np.ndarray], settings: BagEvalSettings, class_names: list[str],
                         ignore_index: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for task in ALL_TASKS:
        if task in states:
            accumulator = new_accumulator(task, settings, class_names, ignore_index)
            accumulator.load_state(states[task])
            results[task] = accumulator.compute()
    return results


def _stability_summary(results: Sequence[BagResult]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for key in STABILITY_KEYS.values():
        values = [r.stability[key] for result in results for r in result.records if key in r.stability and math.isfinite(r.stability[key])]
        if values:
            summary[key] = float(np.mean(values))
    return summary


def _latency_summary(results: Sequence[BagResult]) -> dict[str, dict[str, float]]:
    stages = sorted({stage for result in results for r in result.records for stage in r.latency}, key=lambda s: (s == "total", s))
    return {stage: latency_stats([r.latency[stage] for result in results for r in result.records if stage in r.latency]) for stage in stages}


def _coverage(valid: int, covered: int) -> float | None:
    return covered / valid if valid else None


def bag_summary(result: BagResult, settings: BagEvalSettings) -> dict[str, Any]:
    """The JSON-ready figures of one bag."""
    choice = result.topics
    return {
        "bag": result.bag,
        "storage": result.storage,
        "topics": {"camera": choice.camera, "camera_info": choice.camera_info, "ground_truth": choice.ground_truth,
                   "predictions": choice.predictions, "classes": choice.classes},
        "frames": {"planned": result.frames_planned, "evaluated": result.frames_evaluated, "with_ground_truth": result.frames_with_gt,
                   "failed": sum(result.failures.values()), "failures": result.failures, "unmatched": result.unmatched},
        "metrics": _metrics_from_states(result.states, settings, result.class_names, result.ignore_index),
        "depth_coverage": _coverage(*result.depth_pixels),
        "stability": _stability_summary([result]),
        "latency": _latency_summary([result]),
        "latency_source": result.latency_source,
        "output_bag": result.output_bag,
        "notes": result.notes,
    }


def summarize(results: Sequence[BagResult], settings: BagEvalSettings) -> dict[str, Any]:
    """Per-bag figures and the aggregate over all bags (metric states summed: exact pooled metrics)."""
    if not results:
        raise ValueError("no bag results to summarize")
    semantic_sets = {tuple(r.class_names) for r in results if SEMANTIC in r.states}
    if len(semantic_sets) > 1:
        raise ValueError(f"the bags name different semantic class sets {sorted(semantic_sets)}; evaluate them separately")
    class_names = list(next(iter(semantic_sets))) if semantic_sets else results[0].class_names
    ignore_index = next((r.ignore_index for r in results if SEMANTIC in r.states), IGNORE_INDEX)
    pooled: dict[str, np.ndarray] = {}
    for result in results:
        for task, state in result.states.items():
            pooled[task] = pooled[task] + state if task in pooled else state.copy()
    valid = sum(r.depth_pixels[0] for r in results)
    covered = sum(r.depth_pixels[1] for r in results)
    metrics = _metrics_from_states(pooled, settings, class_names, ignore_index)
    return {
        "source": {"model": settings.model, "backend": settings.backend if settings.model else None,
                   "predictions_from_bag": settings.predictions_from_bag},
        "settings": {"stamp_tolerance_s": settings.tolerance_s, "resize_mode": settings.resize_mode,
                     "rescale_for_camera": settings.rescale_for_camera, "min_depth": settings.min_depth,
                     "max_depth": settings.max_depth if math.isfinite(settings.max_depth) else None},
        "classes": class_names,
        "bags": [bag_summary(r, settings) for r in results],
        "aggregate": {
            "bags": len(results),
            "frames_evaluated": sum(r.frames_evaluated for r in results),
            "frames_failed": sum(sum(r.failures.values()) for r in results),
            "metrics": metrics,
            "flat_metrics": flatten_metrics(metrics),
            "depth_coverage": _coverage(valid, covered),
            "stability": _stability_summary(results),
            "latency": _latency_summary(results),
        },
    }
