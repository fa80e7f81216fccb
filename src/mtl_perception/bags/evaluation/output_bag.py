"""The optional output bag of a bag evaluation: copies of the inputs plus prediction topics on the input stamps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
from mtl_perception.bags.frames import MatchedFrame
from mtl_perception.bags.io import BagReader, BagWriter
from mtl_perception.tasks import DEPTH, SEMANTIC

# task -> (deploy graph output, topic name under the prediction namespace) of the pictures the output bag carries
PICTURES = {DEPTH: ("depth_color", DEPTH_COLOR_NAME), SEMANTIC: ("semantic_overlay", SEMANTIC_OVERLAY_NAME)}


def output_bag_path(output: str | None, bag: str, many: bool) -> str | None:
    """With one bag, ``output`` is the output bag; with several, a folder holding one output per bag."""
    if not output:
        return None
    return str(Path(output) / f"{Path(bag).name}_predictions") if many else output


class OutputBag:
    """The output bag: copies of the inputs plus prediction topics on the input stamps."""

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

    def write(self, frame: MatchedFrame, maps: dict[str, np.ndarray], pictures: dict[str, np.ndarray],
              latency_s: float) -> None:
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
                message = messages.image_message(maps[task], TASK_TOPICS[task][1], stamp, frame_id)
                self.writer.write(task_topic(PREDICTION_NAMESPACE, task), log_time, message)
        for _task, (name, topic) in PICTURES.items():
            if name in pictures:
                message = messages.image_message(pictures[name], "bgr8", stamp, frame_id)
                self.writer.write(join_topic(PREDICTION_NAMESPACE, topic), log_time, message)
