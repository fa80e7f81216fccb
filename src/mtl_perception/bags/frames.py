"""Assemble a bag's messages into frames: a reference stamp plus every message matched to it by stamp.

Two passes over the bag. The first reads only header stamps (straight from the serialised bytes) and
decides, for every reference frame (a camera message, or a stamp the prediction topics carry), which
message of every other topic belongs to it: the nearest stamp within the tolerance; camera info falls back to
the latest earlier one, since drivers often publish it at a lower rate. The second pass streams the
messages in log-time order, holds each one only until its frame is complete, and yields the frames in
stamp order, so memory stays at a few frames whatever the bag's length.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator

import numpy as np

from mtl_perception.bags.io import BagReader, header_stamp_ns
from mtl_perception.bags.matching import match_nearest
from mtl_perception.bags.topics import TopicChoice

CopyCallback = Callable[[str, int, bytes], None]


@dataclass
class MatchedFrame:
    """One reference frame and the messages matched to it (deserialised ``rosbags`` objects)."""

    index: int  # position in stamp order among the planned frames
    stamp_ns: int  # header stamp of the reference frame
    camera: Any | None = None
    camera_log_ns: int | None = None  # the camera message's log (receive) time in the bag
    camera_info: Any | None = None
    ground_truth: dict[str, Any] = field(default_factory=dict)  # task -> Image message
    predictions: dict[str, Any] = field(default_factory=dict)  # task -> Image message (prediction-topic mode)
    prediction_log_ns: int | None = None  # log time of the last-arriving prediction message of this frame


@dataclass
class FramePlan:
    """Which message (topic, position within the topic) each frame needs, from the stamp-only pass."""

    reference_topic: str  # the camera, or the first prediction topic
    stamps: list[int]  # reference stamps in frame order
    needs: list[dict[str, int]]  # per frame: role -> position in that role's topic
    roles: dict[str, str]  # role ("camera", "camera_info", "gt/<task>", "pred/<task>") -> topic
    unmatched: dict[str, int]  # role -> frames without a match
    classes_text: str | None = None  # the class-table JSON, when the choice has such a topic

    def __len__(self) -> int:
        return len(self.stamps)


def _roles(choice: TopicChoice) -> dict[str, str]:
    roles: dict[str, str] = {}
    if choice.camera:
        roles["camera"] = choice.camera
    if choice.camera_info:
        roles["camera_info"] = choice.camera_info
    roles.update({f"gt/{task}": topic for task, topic in choice.ground_truth.items()})
    roles.update({f"pred/{task}": topic for task, topic in choice.predictions.items()})
    return roles


def _latest_before(stamps: np.ndarray, reference: int) -> int | None:
    earlier = np.nonzero(stamps <= reference)[0]
    return int(earlier[np.argmax(stamps[earlier])]) if earlier.size else None


def plan_frames(reader: BagReader, choice: TopicChoice, tolerance_ns: int,
                only_stamps: Collection[int] | None = None, max_frames: int | None = None) -> FramePlan:
    """First pass: read every header stamp of the chosen topics and match them to the reference frames.

    The reference frames are the camera messages, or, when the choice reads predictions from the bag,
    every distinct stamp that any prediction topic carries (a frame whose depth message was lost is still
    scored on its labels). ``only_stamps`` keeps just those stamps; ``max_frames`` the first N frames.
    """
    roles = _roles(choice)
    stamps: dict[str, list[int]] = {topic: [] for topic in set(roles.values())}
    classes_text = None
    scan = list(stamps) + ([choice.classes] if choice.classes else [])
    for topic, _, raw in reader.messages(scan):
        if topic == choice.classes and topic not in stamps:
            classes_text = str(reader.deserialize(raw, topic).data)
            continue
        stamps[topic].append(header_stamp_ns(raw))
    needs: list[dict[str, int]]
    if choice.predictions:
        reference_topic = choice.predictions[next(iter(choice.predictions))]
        frame_stamps = sorted({s for task, topic in choice.predictions.items() for s in stamps[topic]})
        needs = [{} for _ in frame_stamps]
    else:
        reference_topic = roles["camera"]
        order = sorted(range(len(stamps[reference_topic])), key=lambda i: stamps[reference_topic][i])
        frame_stamps = [stamps[reference_topic][i] for i in order]
        needs = [{"camera": i} for i in order]
    if only_stamps is not None:
        keep = {int(s) for s in only_stamps}
        kept = [i for i, s in enumerate(frame_stamps) if s in keep]
        frame_stamps, needs = [frame_stamps[i] for i in kept], [needs[i] for i in kept]
    if max_frames is not None:
        frame_stamps, needs = frame_stamps[:max_frames], needs[:max_frames]
    unmatched: dict[str, int] = {}
    for role, topic in roles.items():
        if role == "camera" and not choice.predictions:
            continue
        matches = match_nearest(frame_stamps, stamps[topic], tolerance_ns)
        if role == "camera_info":
            info_stamps = np.asarray(stamps[topic], dtype=np.int64)
            matches = [m if m is not None else _latest_before(info_stamps, s) for m, s in zip(matches, frame_stamps)]
        missing = 0
        for need, match in zip(needs, matches):
            if match is None:
                missing += 1
            else:
                need[role] = match
        if missing:
            unmatched[role] = missing
    return FramePlan(reference_topic, frame_stamps, needs, roles, unmatched, classes_text)


def stream_frames(reader: BagReader, plan: FramePlan, copy_topics: Collection[str] = (),
                  on_copy: CopyCallback | None = None) -> Iterator[MatchedFrame]:
    """Second pass: yield every planned frame, in stamp order, with its messages deserialised.

    Every message of ``copy_topics`` (e.g. to carry the camera and ground truth into an output bag) is
    handed to ``on_copy(topic, log_time_ns, raw)`` as it is read, before the frames it completes.
    """
    wanted: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)  # (topic, position) -> [(frame, role)]
    for frame_index, need in enumerate(plan.needs):
        for role, position in need.items():
            wanted[(plan.roles[role], position)].append((frame_index, role))
    pending: dict[int, dict[str, tuple[int, bytes]]] = defaultdict(dict)
    remaining = [len(need) for need in plan.needs]
    positions: dict[str, int] = defaultdict(int)
    next_frame = 0
    topics = set(plan.roles.values()) | set(copy_topics)
    for topic, log_time, raw in reader.messages(topics):
        if on_copy is not None and topic in copy_topics:
            on_copy(topic, log_time, raw)
        if topic not in plan.roles.values():
            continue
        position = positions[topic]
        positions[topic] += 1
        for frame_index, role in wanted.get((topic, position), ()):
            pending[frame_index][role] = (log_time, raw)
            remaining[frame_index] -= 1
        while next_frame < len(plan) and remaining[next_frame] == 0:
            yield _assemble(reader, plan, next_frame, pending.pop(next_frame, {}))
            next_frame += 1
    while next_frame < len(plan):  # only reached if the bag holds fewer messages than its index said
        yield _assemble(reader, plan, next_frame, pending.pop(next_frame, {}))
        next_frame += 1


def _assemble(reader: BagReader, plan: FramePlan, index: int, parts: dict[str, tuple[int, bytes]]) -> MatchedFrame:
    frame = MatchedFrame(index=index, stamp_ns=plan.stamps[index])
    for role, (log_time, raw) in parts.items():
        message = reader.deserialize(raw, plan.roles[role])
        if role == "camera":
            frame.camera, frame.camera_log_ns = message, log_time
        elif role == "camera_info":
            frame.camera_info = message
        elif role.startswith("gt/"):
            frame.ground_truth[role[3:]] = message
        else:
            frame.predictions[role[5:]] = message
            frame.prediction_log_ns = max(frame.prediction_log_ns or log_time, log_time)
    return frame
