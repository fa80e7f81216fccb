"""Evaluating one bag: topics and frame plan, predictions (model or recorded), scoring, strip and output bag."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from mtl_perception.bags import messages
from mtl_perception.bags.evaluation.ground_truth import decode_maps
from mtl_perception.bags.evaluation.output_bag import PICTURES, OutputBag
from mtl_perception.bags.evaluation.scoring import FrameRecord, Scorer
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.bags.evaluation.strip import strip_indices, strip_row
from mtl_perception.bags.frames import MatchedFrame, plan_frames, stream_frames
from mtl_perception.bags.io import BagReader
from mtl_perception.bags.topics import TopicChoice, choose_topics
from mtl_perception.colorize import palette_from_sequence
from mtl_perception.evaluation.contact_sheet import Panel
from mtl_perception.inference.camera_info import CameraInfoError
from mtl_perception.inference.frame_pipeline import FramePipeline, FrameSettings
from mtl_perception.inference.processing import to_rgb
from mtl_perception.inference.image_codec import ImageDecodeError
from mtl_perception.tasks import ALL_TASKS, DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC

# task -> the deploy graph output that is its prediction map
GRAPH_MAPS = {DEPTH: "depth", SEMANTIC: "labels", NORMALS: "normals"}
MODEL_LATENCY = "model stages (wall clock)"
BAG_LATENCY = "bag log time of prediction - log time of its camera frame"
# called with (frames done, frames planned): once when the frames are planned, then after every frame
ProgressCallback = Callable[[int, int], None]


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


def evaluate_bag(path: str | os.PathLike, settings: BagEvalSettings,
                 on_progress: ProgressCallback | None = None) -> BagResult:
    """Evaluate one bag (see the package docstring); raises BagError/ValueError with a one-line reason.

    ``on_progress(done, planned)`` reports the frames (an executor's progress bar over many bags)."""
    settings.validate()
    bag_path = Path(path)
    pipeline = None
    if settings.model is not None:
        frame_settings = FrameSettings(resize_mode=settings.resize_mode, rescale_for_camera=settings.rescale_for_camera)
        pipeline = FramePipeline(settings.model, settings.backend, settings.backend_options, frame_settings)
    try:
        with BagReader(bag_path) as reader:
            return _evaluate_open_bag(reader, settings, pipeline, on_progress)
    finally:
        if pipeline is not None:
            pipeline.close()


def _class_set(pipeline: FramePipeline | None, plan_classes: str | None, choice: TopicChoice,
               notes: list[str]) -> tuple[list[str], list[list[int]], int]:
    """Class names, palette and ignore id: the model's, else the bag's class table."""
    table = messages.parse_class_table(plan_classes, choice.classes or "") if plan_classes else None
    if pipeline is not None:
        meta = pipeline.metadata
        names, palette = list(meta.class_names), [list(c) for c in meta.palette]
        if table and table[0] != names:
            if len(table[0]) > len(names):
                raise ValueError(f"the bag's ground-truth classes {table[0]} outnumber the model's {names}; "
                                 "evaluate with a model trained on the bag's class set")
            notes.append(f"the bag's class table {table[0]} differs from the model's classes {names}; "
                         "scored by class id")
        return names, palette, int(meta.ignore_index)
    if table:
        return table
    return [], [], IGNORE_INDEX


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
    record.latency = {"decode": decoded - start, "graph": seconds["graph"],
                      "total": decoded - start + seconds["prepare"] + seconds["graph"]}
    maps = {task: result.arrays[name] for task, name in GRAPH_MAPS.items() if name in result.arrays}
    return maps, {name: result.arrays[name] for name, _ in PICTURES.values() if name in result.arrays}


def _frame_inputs(frame: MatchedFrame, choice: TopicChoice, pipeline: FramePipeline | None, outputs: set[str],
                  record: FrameRecord) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(prediction maps, graph pictures, ground truth) of one frame; latency into ``record``.

    ValueError when undecodable."""
    if pipeline is not None:
        maps, pictures = _predict(pipeline, frame, choice, outputs, record)
    else:
        maps, pictures = decode_maps(frame.predictions), {}
        if frame.prediction_log_ns is not None and frame.camera_log_ns is not None:
            record.latency = {"total": (frame.prediction_log_ns - frame.camera_log_ns) / 1e9}
    return maps, pictures, decode_maps(frame.ground_truth)


def _camera_rgb(frame: MatchedFrame, choice: TopicChoice) -> np.ndarray | None:
    """The camera image as RGB (picture strip only), None without a camera message."""
    return to_rgb(*messages.decode_image(frame.camera, choice.camera_type)) if frame.camera is not None else None


def _open_output(settings: BagEvalSettings, reader: BagReader, choice: TopicChoice, result: BagResult,
                 palette: np.ndarray) -> OutputBag:
    names = result.class_names
    table = messages.class_table(names, palette.tolist(), result.ignore_index) if names else ""
    return OutputBag(settings.output_bag, settings.output_storage or reader.storage, settings.overwrite, reader,
                     choice.topics(), result.tasks_predicted, table)


def _reported(frames: Iterator[MatchedFrame], planned: int, on_progress: ProgressCallback) -> Iterator[MatchedFrame]:
    """The frames, calling ``on_progress(done, planned)`` first and once each frame's evaluation is over."""
    on_progress(0, planned)
    done = 0
    for frame in frames:
        yield frame
        done += 1
        on_progress(done, planned)


def _evaluate_open_bag(reader: BagReader, settings: BagEvalSettings, pipeline: FramePipeline | None,
                       on_progress: ProgressCallback | None) -> BagResult:
    choice = choose_topics(
        reader, image_topic=settings.image_topic, camera_info_topic=settings.camera_info_topic,
        ground_truth=settings.gt_topics, predictions_from_bag=settings.predictions_from_bag,
        prediction_namespace=settings.prediction_namespace, prediction_topics=settings.prediction_topics,
        classes_topic_name=settings.classes_topic, outputs_root=settings.outputs_root,
    )
    tolerance_ns = int(round(settings.tolerance_s * 1e9))
    plan = plan_frames(reader, choice, tolerance_ns, settings.only_stamps, settings.max_frames)
    notes = list(choice.notes)
    class_names, palette_list, ignore_index = _class_set(pipeline, plan.classes_text, choice, notes)
    if pipeline is not None:
        tasks_predicted = list(pipeline.metadata.tasks)
    else:
        tasks_predicted = [t for t in ALL_TASKS if t in choice.predictions]
    scored = [t for t in tasks_predicted if t in choice.ground_truth]
    if SEMANTIC in scored and not class_names:
        raise ValueError(f"bag {reader.path} has no class table (std_msgs/String on .../semantic/classes) to name "
                         "the semantic classes; record the node's semantic/classes topic or name one with "
                         "--classes-topic")
    palette = palette_from_sequence(palette_list or None, max(len(class_names), 1))
    depth_range = pipeline.depth_range if pipeline is not None else (0.1, 10.0)
    result = BagResult(str(reader.path), reader.storage, choice, tasks_predicted, class_names, palette.tolist(),
                       ignore_index, frames_planned=len(plan), unmatched=dict(plan.unmatched), notes=notes,
                       latency_source=MODEL_LATENCY if pipeline is not None else BAG_LATENCY)
    scorer = Scorer(scored, settings, class_names, ignore_index)
    strip_at = strip_indices(len(plan), settings.strip_frames)
    output = None
    outputs = {GRAPH_MAPS[task] for task in tasks_predicted}
    if settings.output_bag and pipeline is not None:
        outputs |= {PICTURES[task][0] for task in tasks_predicted if task in PICTURES}
        output = _open_output(settings, reader, choice, result, palette)
    frames = stream_frames(reader, plan, choice.topics() if output else (), output.copy if output else None)
    progress = {"total": len(plan), "desc": f"bag-eval {Path(reader.path).name}", "unit": "frame",
                "disable": not settings.progress}
    if on_progress is not None:
        frames = _reported(frames, len(plan), on_progress)
    try:
        for frame in tqdm(frames, **progress):
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
        notes.append(f"no frame had matching ground truth for {', '.join(missing_gt)} "
                     f"(stamp tolerance {settings.tolerance_s} s)")
    return result
