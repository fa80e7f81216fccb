"""Choosing a bag's camera, camera-info, ground-truth and prediction topics: from flags, else by guessing.

Guessing looks at message types, at the encoding of each image topic's first message and at topic
names: the camera is the colour or mono image stream that is not ground truth or a prediction (with
several cameras, ``camera_topics`` lists them and each is evaluated on its own, its ground truth being
the topics that carry the camera's name, e.g. ``/front/gt/depth`` or ``/gt/front/depth`` for ``/front/image_raw``);
ground truth is an image whose name says depth / semantic (label, seg) / normals with a fitting
encoding, preferring names under ``/gt`` (or containing ``gt`` / ``ground_truth``); predictions are the
task topics under the prediction namespace (``/perception`` by default). A failed or ambiguous guess
is a :class:`TopicError` that lists the bag's topics and names the flag to set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from mtl_perception.bags.conventions import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    GT_NAMESPACE,
    IMAGE_TYPE,
    PREDICTION_NAMESPACE,
    STRING_TYPE,
    classes_topic,
    task_topic,
)
from mtl_perception.bags.io import BagError, BagReader
from mtl_perception.inference.processing import SUPPORTED_ENCODINGS
from mtl_perception.tasks import ALL_TASKS, DEPTH, NORMALS, SEMANTIC

# Encodings a ground-truth image of each task may use (16UC1/mono16 depth is millimetres, REP-118).
GT_ENCODINGS: dict[str, tuple[str, ...]] = {
    DEPTH: ("32FC1", "16UC1", "mono16"),
    SEMANTIC: ("mono8", "8UC1", "16UC1"),
    NORMALS: ("32FC3",),
}
TASK_KEYWORDS: dict[str, tuple[str, ...]] = {
    DEPTH: ("depth",),
    SEMANTIC: ("semantic", "label", "seg", "class"),
    NORMALS: ("normal",),
}
NOT_CAMERA_KEYWORDS = ("depth", "semantic", "label", "seg", "normal", "overlay", "mask", "disparity", "confidence")
GT_HINTS = ("/gt", "gt/", "ground_truth", "groundtruth", "_gt")
GENERIC_CAMERA_SEGMENTS = ("camera", "cam", "image", "image_raw", "sensors")  # shared by every camera: not a camera's name
FLAGS = {DEPTH: "--gt-depth-topic", SEMANTIC: "--gt-semantic-topic", NORMALS: "--gt-normals-topic"}
PRED_FLAGS = {DEPTH: "--pred-depth-topic", SEMANTIC: "--pred-semantic-topic", NORMALS: "--pred-normals-topic"}


class TopicError(BagError):
    """A topic flag names a missing topic, or a guess failed or was ambiguous."""


@dataclass
class TopicChoice:
    """The topics a bag evaluation reads (None: not present / not used)."""

    camera: str | None
    camera_type: str
    camera_info: str | None
    ground_truth: dict[str, str] = field(default_factory=dict)  # task -> topic
    predictions: dict[str, str] = field(default_factory=dict)  # task -> topic (prediction-topic mode)
    classes: str | None = None  # class-table topic (std_msgs/String JSON)
    notes: list[str] = field(default_factory=list)  # what was guessed, what is missing

    def topics(self) -> list[str]:
        """Every topic of the choice."""
        names = [self.camera, self.camera_info, self.classes, *self.ground_truth.values(), *self.predictions.values()]
        return [name for name in names if name]


def first_encodings(reader: BagReader) -> dict[str, str]:
    """Encoding of the first message of every sensor_msgs/Image topic (topics without messages left out)."""
    image_topics = [name for name, info in reader.topics.items() if info.msgtype == IMAGE_TYPE and info.count > 0]
    found: dict[str, str] = {}
    for topic in image_topics:
        for _, _, raw in reader.messages([topic]):
            found[topic] = str(reader.deserialize(raw, topic).encoding)
            break
    return found


def _lower(name: str) -> str:
    return name.lower()


def _is_under(topic: str, namespace: str) -> bool:
    prefix = "/" + namespace.strip("/") + "/"
    return bool(namespace.strip("/")) and topic.startswith(prefix)


class _Chooser:
    """Shared state of one topic selection (the reader, encodings, error text)."""

    def __init__(self, reader: BagReader, prediction_namespace: str, outputs_root: str = "") -> None:
        self.reader = reader
        self.topics = reader.topics
        self.encodings = first_encodings(reader)
        self.prediction_namespace = prediction_namespace
        self.outputs_root = outputs_root  # other cameras' outputs live under it too

    def fail(self, problem: str, fix: str) -> TopicError:
        return TopicError(f"{problem} in bag {self.reader.path}; {fix}. The bag's topics: {self.reader.topic_listing()}")

    def check(self, topic: str, allowed_types: tuple[str, ...], flag: str) -> str:
        info = self.topics.get(topic)
        if info is None:
            raise self.fail(f"topic {topic} (from {flag}) does not exist", f"set {flag} to one of the topics below")
        if info.msgtype not in allowed_types:
            raise self.fail(f"topic {topic} (from {flag}) has type {info.msgtype}, expected {' or '.join(allowed_types)}",
                            f"set {flag} to a topic of that type")
        return topic

    def unique(self, candidates: list[str], what: str, flag: str, prefer: Callable[[str], bool] | None = None) -> str | None:
        if prefer is not None and len(candidates) > 1:
            preferred = [c for c in candidates if prefer(c)]
            candidates = preferred or candidates
        if len(candidates) > 1:
            raise self.fail(f"several topics could be the {what} ({', '.join(sorted(candidates))})", f"choose one with {flag}")
        return candidates[0] if candidates else None

    def is_prediction(self, topic: str) -> bool:
        return _is_under(topic, self.prediction_namespace) or _is_under(topic, self.outputs_root)

    def camera_candidates(self) -> list[str]:
        """Every camera image stream of the bag (a raw stream is preferred over its /compressed twin)."""
        candidates = []
        for name, info in self.topics.items():
            lowered = _lower(name)
            if info.count == 0 or self.is_prediction(name) or _is_under(name, GT_NAMESPACE):
                continue
            if any(word in lowered for word in NOT_CAMERA_KEYWORDS):
                continue
            if info.msgtype == IMAGE_TYPE and self.encodings.get(name) in SUPPORTED_ENCODINGS:
                candidates.append(name)
            elif info.msgtype == COMPRESSED_TYPE:
                candidates.append(name)
        raw = {c for c in candidates if self.topics[c].msgtype == IMAGE_TYPE}
        # image_transport publishes <raw>/compressed next to <raw>: prefer the raw stream
        return sorted(c for c in candidates if not (c.endswith("/compressed") and c[: -len("/compressed")] in raw))

    def guess_camera(self) -> str | None:
        return self.unique(self.camera_candidates(), "camera image", "--image-topic (or evaluate every camera with --all-cameras)")

    def guess_camera_info(self, camera: str | None) -> str | None:
        candidates = [name for name, info in self.topics.items() if info.msgtype == CAMERA_INFO_TYPE and info.count > 0]
        if len(candidates) <= 1 or camera is None:
            return candidates[0] if len(candidates) == 1 else None
        base = camera[: -len("/compressed")] if camera.endswith("/compressed") else camera
        namespace = base.rsplit("/", 1)[0]
        same = [c for c in candidates if c.rsplit("/", 1)[0] == namespace]
        return self.unique(same or candidates, "camera info", "--camera-info-topic")

    def guess_ground_truth(self, task: str, camera: str | None) -> str | None:
        candidates = []
        for name, encoding in self.encodings.items():
            lowered = _lower(name)
            if name == camera or self.is_prediction(name) or encoding not in GT_ENCODINGS[task]:
                continue
            if any(word in lowered for word in TASK_KEYWORDS[task]):
                candidates.append(name)
        near = [c for c in candidates if camera_name(camera) and camera_name(camera) in c.strip("/").split("/")]
        return self.unique(near or candidates, f"{task} ground truth", FLAGS[task], prefer=lambda c: any(h in _lower(c) for h in GT_HINTS))

    def guess_classes(self, predictions: bool) -> str | None:
        strings = [name for name, info in self.topics.items() if info.msgtype == STRING_TYPE and info.count > 0]
        order = [classes_topic(self.prediction_namespace)] if predictions else []
        order.append(classes_topic(GT_NAMESPACE))
        for topic in order:
            if topic in strings:
                return topic
        others = [name for name in strings if name.endswith("semantic/classes")]
        return others[0] if len(others) == 1 else None


def camera_name(camera: str | None) -> str:
    """The name that tells a camera's topics apart in a bag of several: its topic's first segment ('' if generic)."""
    if not camera:
        return ""
    first = camera.strip("/").split("/")[0]
    return "" if first in GENERIC_CAMERA_SEGMENTS or first == camera.strip("/") else first


def camera_topics(reader: BagReader, prediction_namespace: str = PREDICTION_NAMESPACE) -> list[str]:
    """Every camera image topic of a bag (``bag-eval --all-cameras`` evaluates each)."""
    return _Chooser(reader, prediction_namespace).camera_candidates()


def choose_topics(
    reader: BagReader,
    *,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    ground_truth: Mapping[str, str | None] | None = None,
    predictions_from_bag: bool = False,
    prediction_namespace: str = PREDICTION_NAMESPACE,
    prediction_topics: Mapping[str, str | None] | None = None,
    classes_topic_name: str | None = None,
    outputs_root: str = "",
) -> TopicChoice:
    """Pick the topics to evaluate; explicit names are checked, the rest guessed (see the module doc).

    With ``predictions_from_bag`` the predictions are read from the bag (the node's recorded outputs or
    any topics named in ``prediction_topics``) and the camera topic is optional (used for pictures).
    """
    chooser = _Chooser(reader, prediction_namespace, outputs_root)
    image_types = (IMAGE_TYPE, COMPRESSED_TYPE)
    notes: list[str] = []
    camera = chooser.check(image_topic, image_types, "--image-topic") if image_topic else chooser.guess_camera()
    if camera is None and not predictions_from_bag:
        raise chooser.fail("no camera image topic found", "name it with --image-topic")
    if camera and not image_topic:
        notes.append(f"camera topic guessed: {camera}")
    if camera_info_topic:
        camera_info = chooser.check(camera_info_topic, (CAMERA_INFO_TYPE,), "--camera-info-topic")
    else:
        camera_info = chooser.guess_camera_info(camera)
        notes.append(f"camera info guessed: {camera_info}" if camera_info else "no camera info topic: depth is not rescaled to the camera's focal length")

    truth: dict[str, str] = {}
    for task in ALL_TASKS:
        given = (ground_truth or {}).get(task)
        topic = chooser.check(given, (IMAGE_TYPE,), FLAGS[task]) if given else chooser.guess_ground_truth(task, camera)
        if topic:
            truth[task] = topic
    missing = [t for t in ALL_TASKS if t not in truth]
    if missing:
        notes.append(f"no ground truth for {', '.join(missing)}: only latency and temporal stability for {'them' if len(missing) > 1 else 'it'}")

    predicted: dict[str, str] = {}
    if predictions_from_bag:
        for task in ALL_TASKS:
            given = (prediction_topics or {}).get(task)
            if given:
                predicted[task] = chooser.check(given, (IMAGE_TYPE,), PRED_FLAGS[task])
            elif (default := task_topic(prediction_namespace, task)) in chooser.topics and chooser.topics[default].count > 0:
                predicted[task] = default
        if not predicted:
            raise chooser.fail(f"no prediction topics under {prediction_namespace}",
                               "name them with --pred-depth-topic/--pred-semantic-topic/--pred-normals-topic or --prediction-namespace")
    classes = chooser.check(classes_topic_name, (STRING_TYPE,), "--classes-topic") if classes_topic_name else chooser.guess_classes(predictions_from_bag)
    camera_type = chooser.topics[camera].msgtype if camera else IMAGE_TYPE
    return TopicChoice(camera, camera_type, camera_info, truth, predicted, classes, notes)
