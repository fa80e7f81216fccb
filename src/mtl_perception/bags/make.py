"""Datasets -> rosbag2: a synthetic sequence, a folder dataset or NYUv2 frames as camera + ground-truth topics.

Frame ``i`` gets header stamp ``start + i / rate`` (also its log time) on every topic, frame id
``camera_optical_frame``. Topics follow ``bags.conventions``: the camera image (``rgb8`` raw, or JPEG/PNG
compressed), camera info, and whichever ground truth the source has (depth 32FC1 metres with NaN where
invalid, labels mono8 with 255 unlabelled, normals 32FC3), plus the class table as a std_msgs/String.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from mtl_perception.bags import messages
from mtl_perception.bags.conventions import (
    CAMERA_COMPRESSED_TOPIC,
    CAMERA_IMAGE_TOPIC,
    CAMERA_INFO_TOPIC,
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    FRAME_ID,
    GT_NAMESPACE,
    IMAGE_TYPE,
    STRING_TYPE,
    TASK_TOPICS,
    classes_topic,
    task_topic,
)
from mtl_perception.bags.io import BagWriter, Storage
from mtl_perception.tasks import DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC

DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000  # a fixed start stamp: the same input gives the same bag
RECORD_KEYS = {DEPTH: "depth", SEMANTIC: "labels", NORMALS: "normals"}


@dataclass
class RecordSource:
    """Frames to write: ``records()`` yields dicts with rgb, K and optional depth/labels/normals."""

    description: str
    count: int
    records: Callable[[], Iterator[dict[str, Any]]]
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    ignore_index: int = IGNORE_INDEX


@dataclass
class BagOptions:
    """How to write the bag."""

    storage: Storage = "sqlite3"
    compression: str = "none"  # none (rgb8 Image) | jpeg | png (CompressedImage)
    rate_hz: float = 10.0
    start_ns: int = DEFAULT_START_NS
    frame_id: str = FRAME_ID
    jpeg_quality: int = 95
    overwrite: bool = False
    version: int = 9  # rosbag2 metadata version to write (8 or 9)


@dataclass
class MadeBag:
    """What ``make_bag`` wrote."""

    path: Path
    frames: int
    topics: list[str]
    seconds_of_recording: float


def synthetic_source(seed: int, count: int, height: int, width: int) -> RecordSource:
    """``count`` frames of one synthetic room along a smooth camera path (``data.synthetic``)."""
    from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
    from mtl_perception.data.synthetic import render_sequence

    if count < 1:
        raise ValueError(f"--frames must be at least 1, got {count}")

    def records() -> Iterator[dict[str, Any]]:
        for frame in render_sequence(seed, count, height, width):
            yield {"rgb": frame.rgb, "K": frame.K, "depth": frame.depth, "labels": frame.labels, "normals": frame.normals}

    return RecordSource(f"synthetic sequence (seed {seed}, {count} frames at {width}x{height})", count, records,
                        list(SYNTH_CLASS_NAMES), [list(c) for c in SYNTH_PALETTE])


def _dataset_source(dataset: Any, description: str, limit: int | None, class_names: Sequence[str] | None,
                    palette: Sequence[Sequence[int]] | None, ignore_index: int) -> RecordSource:
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count < 1:
        raise ValueError(f"{description} holds no frames to write")

    def records() -> Iterator[dict[str, Any]]:
        for position in range(count):
            yield dataset.read_record(position)

    names = list(class_names or [])
    colours = [list(c) for c in palette] if palette else []
    if names and not colours:
        from mtl_perception.colorize import default_palette

        colours = default_palette(len(names)).tolist()
    return RecordSource(f"{description} ({count} frames)", count, records, names, colours, ignore_index)


def folder_source(root: str | Path, limit: int | None = None) -> RecordSource:
    """Frames of a folder dataset (``data.folder`` format), in name order."""
    from mtl_perception.data.folder import FolderDataset

    dataset = FolderDataset(root)
    return _dataset_source(dataset, f"folder dataset {root}", limit, dataset.meta.class_names, dataset.meta.palette, IGNORE_INDEX)


def nyuv2_source(path: str | Path, split: str = "test", num_classes: int = 13, limit: int | None = None) -> RecordSource:
    """Frames of the labelled NYUv2 .mat (no normals in that file)."""
    from mtl_perception.data.nyuv2 import NYUv2Dataset, nyuv2_class_names, nyuv2_palette

    dataset = NYUv2Dataset(path, split=split, num_classes=num_classes)
    return _dataset_source(dataset, f"NYUv2 {split} split of {path}", limit, nyuv2_class_names(num_classes),
                           nyuv2_palette(num_classes), IGNORE_INDEX)


def _depth_with_nan(depth: np.ndarray) -> np.ndarray:
    """Metres as float32 with NaN wherever the dataset marks no ground truth (0, negative, non-finite)."""
    out = np.asarray(depth, dtype=np.float32).copy()
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def make_bag(out: str | Path, source: RecordSource, options: BagOptions, progress: bool = True) -> MadeBag:
    """Write ``source`` as a rosbag2 at ``out`` (atomically); returns what was written."""
    if options.rate_hz <= 0:
        raise ValueError(f"--rate must be positive, got {options.rate_hz}")
    if options.compression not in ("none", *messages.COMPRESSED_FORMATS):
        raise ValueError(f"unknown --compression '{options.compression}'; choose none, jpeg or png")
    period_ns = int(round(1e9 / options.rate_hz))
    compressed = options.compression != "none"
    camera_topic = CAMERA_COMPRESSED_TOPIC if compressed else CAMERA_IMAGE_TOPIC
    written = 0
    with BagWriter(out, options.storage, overwrite=options.overwrite, version=options.version) as writer:
        writer.add_topic(camera_topic, COMPRESSED_TYPE if compressed else IMAGE_TYPE)
        writer.add_topic(CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE)
        if source.class_names:
            writer.add_topic(classes_topic(GT_NAMESPACE), STRING_TYPE)
            table = messages.class_table(source.class_names, source.palette, source.ignore_index)
            writer.write(classes_topic(GT_NAMESPACE), options.start_ns, messages.string_message(table))
        bar = tqdm(source.records(), total=source.count, desc="bag-make", unit="frame", disable=not progress)
        for index, record in enumerate(bar):
            stamp = options.start_ns + index * period_ns
            rgb = np.ascontiguousarray(record["rgb"])
            if compressed:
                image = messages.compressed_message(rgb, options.compression, stamp, options.frame_id, options.jpeg_quality)
            else:
                image = messages.image_message(rgb, "rgb8", stamp, options.frame_id)
            writer.write(camera_topic, stamp, image)
            writer.write(CAMERA_INFO_TOPIC, stamp, messages.camera_info_message(record["K"], rgb.shape[1], rgb.shape[0], stamp, options.frame_id))
            for task, key in RECORD_KEYS.items():
                if record.get(key) is None:
                    continue
                topic = task_topic(GT_NAMESPACE, task)
                if not writer.has_topic(topic):
                    writer.add_topic(topic, IMAGE_TYPE)
                value = record[key]
                if task == DEPTH:
                    value = _depth_with_nan(value)
                elif task == SEMANTIC:
                    value = np.asarray(value, dtype=np.uint8)
                else:
                    value = np.asarray(value, dtype=np.float32)
                writer.write(topic, stamp, messages.image_message(value, TASK_TOPICS[task][1], stamp, options.frame_id))
            written += 1
        topics = [camera_topic, CAMERA_INFO_TOPIC] + [t for t in (task_topic(GT_NAMESPACE, k) for k in RECORD_KEYS) if writer.has_topic(t)]
        if source.class_names:
            topics.append(classes_topic(GT_NAMESPACE))
    return MadeBag(Path(out), written, topics, written / options.rate_hz)
