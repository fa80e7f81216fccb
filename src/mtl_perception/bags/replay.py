"""Live replay: publish a bag's camera topics into a ROS graph at the recorded rate and record the node's outputs.

For machines without ``ros2 bag play``. Messages are published as the bag stores them (serialised CDR,
original header stamps) with reliable QoS, spaced by their log times divided by ``rate``. The recording
holds, with log time = wall-clock time:
- the camera and camera-info messages, at the moment each was published;
- the node's outputs (``<namespace>/depth``, ``semantic``, ``normals``, ``semantic/classes``) when received;
- the source bag's ground-truth and class-table topics, shifted onto the same wall-clock timeline,
so ``bag-eval --predictions-from-bag`` scores the recording on its own (latency = receive time of an
output - publish time of its camera frame). Each recorded topic carries the QoS its publisher offered
(``offered_qos_profiles``), so a replay of the recording keeps the class table transient local.

Several cameras in one bag: ``all_cameras`` plays every camera stream (each with its own camera info,
guessed per camera as ``bag-eval --all-cameras`` does) for one node serving them all (``cameras.names``), and
records each camera's outputs under ``<namespace>/<camera name>`` (the node's default output namespace of
a camera is its name; the camera's name is its topic's first segment, ``/front/image_raw`` -> ``front``).
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mtl_perception.bags.conventions import IMAGE_TYPE, PREDICTION_NAMESPACE, STRING_TYPE, classes_topic, task_topic
from mtl_perception.bags.io import BagError, BagReader, BagWriter, Storage, qos_from_rclpy, qos_profile
from mtl_perception.bags.topics import camera_name, camera_topics, choose_topics
from mtl_perception.tasks import ALL_TASKS

Log = Callable[[str], None]


@dataclass
class ReplayOptions:
    """How to replay and what to record."""

    rate: float = 1.0  # playback speed factor (2 = twice as fast as recorded)
    image_topic: str | None = None  # camera topic in the bag (None = guess)
    camera_info_topic: str | None = None  # camera info topic in the bag (None = guess)
    all_cameras: bool = False  # play every camera of the bag; outputs recorded under <namespace>/<camera name>
    record: str | None = None  # bag to record into (None = no recording)
    storage: Storage = "sqlite3"
    overwrite: bool = False
    namespace: str = PREDICTION_NAMESPACE  # where the node publishes its outputs
    wait_s: float = 15.0  # longest wait for the node to subscribe / advertise before playing
    settle_s: float = 2.0  # after the last frame, stop once no output arrived for this long
    max_settle_s: float = 60.0  # ... or after this long at most
    start_pause_s: float = 0.5  # pause after discovery, so late-matching endpoints settle
    limit: int | None = None  # publish at most this many camera frames


@dataclass
class ReplayReport:
    """What a replay published and recorded."""

    published: dict[str, int] = field(default_factory=dict)  # topic -> messages
    recorded: dict[str, int] = field(default_factory=dict)  # output topic -> messages received
    record_path: Path | None = None
    seconds: float = 0.0
    subscribers_found: bool = False


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (ImportError naming the missing package)."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        raise BagError(f"no Python message package for {msgtype}; install ros-{package.replace('_', '-')} (or source ROS 2)") from None


def output_topics(namespace: str) -> dict[str, str]:
    """Output topic -> message type recorded from the node."""
    topics = {task_topic(namespace, task): IMAGE_TYPE for task in ALL_TASKS}
    topics[classes_topic(namespace)] = STRING_TYPE
    return topics


class _Recorder:
    """Collects messages from any thread; the thread that created the bag writes them (``flush``).

    The sqlite3 storage may only be used from the thread that opened it, so subscription callbacks
    (executor thread) only queue their messages.
    """

    def __init__(self, writer: BagWriter) -> None:
        self.writer = writer
        self.lock = threading.Lock()
        self.queue: list[tuple[str, int, bytes]] = []
        self.counts: dict[str, int] = {}
        self.last_receive = 0.0

    def received(self, topic: str, raw: bytes) -> None:
        """A node output arrived (any thread): log time = now."""
        with self.lock:
            self.queue.append((topic, time.time_ns(), raw))
            self.counts[topic] = self.counts.get(topic, 0) + 1
            self.last_receive = time.monotonic()

    def put(self, topic: str, raw: bytes, log_time_ns: int | None = None) -> None:
        """A message this process publishes or copies (not counted as received)."""
        with self.lock:
            self.queue.append((topic, time.time_ns() if log_time_ns is None else log_time_ns, raw))

    def flush(self) -> None:
        """Write the queued messages (only from the thread that created the writer)."""
        with self.lock:
            pending, self.queue = self.queue, []
        for topic, log_time, raw in pending:
            self.writer.write_raw(topic, log_time, raw)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def replay_bag(bag: str | Path, options: ReplayOptions, log: Log = print, context: Any = None) -> ReplayReport:
    """Publish the bag's camera topics live (see the module docstring); returns counts and the recording's path.

    Uses ``context`` (an initialised rclpy Context) when given, else initialises and shuts down its own.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if options.rate <= 0:
        raise ValueError(f"--rate must be positive, got {options.rate}")
    report = ReplayReport()
    with BagReader(bag) as reader:
        cameras = played_cameras(reader, options)
        played = list(dict.fromkeys(t for c in cameras for t in (c.image_topic, c.camera_info_topic) if t))
        copied = list(dict.fromkeys(t for c in cameras for t in c.copied_topics))
        outputs = {topic: kind for c in cameras for topic, kind in output_topics(c.namespace).items()}
        # opened before joining the graph: an unwritable recording fails before anything is published
        writer = BagWriter(options.record, options.storage, overwrite=options.overwrite) if options.record else None
        own_context = context is None
        try:
            if own_context:
                context = rclpy.Context()
                rclpy.init(context=context)
            node = rclpy.create_node("bag_replay", context=context)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
        try:
            reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.VOLATILE)
            publishers = {topic: node.create_publisher(message_class(reader.topics[topic].msgtype), topic, reliable) for topic in played}
            recorder = _Recorder(writer) if writer is not None else None
            if writer is not None and recorder is not None:
                for topic in played:  # published here: what our publisher offers
                    writer.add_topic(topic, reader.topics[topic].msgtype, [qos_from_rclpy(reliable)])
                for topic in copied:  # copied from the source bag: what its publisher offered
                    writer.add_topic(topic, reader.topics[topic].msgtype, reader.offered_qos(topic))
                latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                for topic, msgtype in outputs.items():
                    qos = latched if msgtype == STRING_TYPE else reliable
                    node.create_subscription(message_class(msgtype), topic, _raw_callback(recorder, topic), qos, raw=True)
            spinner.start()
            camera_pubs = {c.image_topic: publishers[c.image_topic] for c in cameras}
            report.subscribers_found = _wait(lambda: all(p.get_subscription_count() > 0 for p in camera_pubs.values()), options.wait_s)
            if not report.subscribers_found:
                silent = [topic for topic, pub in camera_pubs.items() if pub.get_subscription_count() == 0]
                log(f"replay: nobody subscribed to {', '.join(silent)} within {options.wait_s:.0f} s; playing anyway "
                    "(is the node running, in this ROS_DOMAIN_ID, subscribed to this topic?)")
            elif recorder is not None:
                image_outputs = [t for t, kind in outputs.items() if kind == IMAGE_TYPE]
                if not _wait(lambda: any(node.count_publishers(t) > 0 for t in image_outputs), options.wait_s):
                    log(f"replay: no publisher on {', '.join(image_outputs)} within {options.wait_s:.0f} s; recording anyway")
            if writer is not None and recorder is not None:
                for topic, msgtype in outputs.items():  # the node's offered QoS, as `ros2 bag record` keeps it
                    writer.add_topic(topic, msgtype, offered_qos(node, topic, msgtype))
            time.sleep(options.start_pause_s)
            started = time.monotonic()
            timeline = _play(reader, played, publishers, set(camera_pubs), options, recorder, report)
            if recorder is not None and writer is not None:
                _settle(recorder, options)
                _copy_shifted(reader, copied, recorder, timeline, options.rate)
                report.recorded = {t: recorder.counts.get(t, 0) for t in outputs}
            report.seconds = time.monotonic() - started
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            executor.shutdown()
            node.destroy_node()
            if own_context:
                rclpy.try_shutdown(context=context)
            if spinner.is_alive():
                spinner.join(timeout=5.0)
        if writer is not None and recorder is not None:
            recorder.flush()  # outputs that arrived while the executor shut down
            report.record_path = writer.close()
    return report


@dataclass(frozen=True)
class PlayedCamera:
    """One camera stream a replay plays, and where the node publishes its outputs."""

    image_topic: str
    camera_info_topic: str | None
    copied_topics: tuple[str, ...]  # its ground truth and class table, copied into the recording
    namespace: str  # the node's outputs of this camera: <namespace>/depth, ...


def played_cameras(reader: BagReader, options: ReplayOptions) -> list[PlayedCamera]:
    """The camera streams to play: the one named or guessed, or with ``all_cameras`` every one of the bag."""
    if options.all_cameras and (options.image_topic or options.camera_info_topic):
        raise ValueError("--all-cameras guesses each camera's topics: do not name --image-topic or --camera-info-topic with it")
    topics = camera_topics(reader, options.namespace) if options.all_cameras else [options.image_topic]
    if options.all_cameras and not topics:
        raise BagError("the bag has no camera image topic to play")
    cameras = []
    for topic in topics:
        choice = choose_topics(reader, image_topic=topic, camera_info_topic=options.camera_info_topic,
                               prediction_namespace=options.namespace)
        assert choice.camera is not None
        namespace = options.namespace
        if options.all_cameras:
            name = camera_name(choice.camera)
            if not name:
                raise BagError(f"camera topic {choice.camera} names no camera (its first segment is generic): play it alone "
                               "with --image-topic and the node's --namespace of that camera")
            namespace = f"{options.namespace.rstrip('/')}/{name}"
        copied = tuple(t for t in [*choice.ground_truth.values(), choice.classes] if t)
        cameras.append(PlayedCamera(choice.camera, choice.camera_info, copied, namespace))
    names = [c.namespace for c in cameras]
    if len(set(names)) != len(names):
        raise BagError(f"cameras {[c.image_topic for c in cameras]} share an output namespace ({names}); play them one at a time")
    return cameras


def offered_qos(node: Any, topic: str, msgtype: str) -> list[Any]:
    """The QoS profiles the publishers of ``topic`` offer (from the ROS graph), else what the node offers by default.

    Written into the recording's metadata so that a replay (``ros2 bag play``) offers the same: the class table
    stays transient local (latched) and late subscribers still get it.
    """
    profiles = []
    try:
        profiles = [qos_from_rclpy(info.qos_profile) for info in node.get_publishers_info_by_topic(topic)]
    except Exception:  # noqa: BLE001 - graph introspection is best effort; the defaults below are the node's own
        profiles = []
    if profiles:
        return profiles[:1] if all(p == profiles[0] for p in profiles) else profiles
    if msgtype == STRING_TYPE:
        return [qos_profile("reliable", "transient_local", 1)]
    return [qos_profile("reliable", "volatile", NODE_OUTPUT_DEPTH)]


NODE_OUTPUT_DEPTH = 5  # the node's qos.output_depth default


def _spin(executor: Any) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def _raw_callback(recorder: _Recorder, topic: str) -> Callable[[bytes], None]:
    def callback(raw: bytes) -> None:
        recorder.received(topic, raw)

    return callback


def _play(reader: BagReader, played: list[str], publishers: dict[str, Any], cameras: set[str], options: ReplayOptions,
          recorder: _Recorder | None, report: ReplayReport) -> tuple[int, int]:
    """Publish on the recorded schedule (at most ``options.limit`` frames per camera); returns (first bag log
    time, wall-clock ns it was played at)."""
    first_log: int | None = None
    start_wall = time.monotonic()
    start_ns = time.time_ns()
    frames = dict.fromkeys(cameras, 0)
    for topic, log_time, raw in reader.messages(played):
        if first_log is None:
            first_log = log_time
        if options.limit is not None and min(frames.values()) >= options.limit:
            break
        if topic in frames and options.limit is not None and frames[topic] >= options.limit:
            continue
        delay = start_wall + (log_time - first_log) / 1e9 / options.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        data = bytes(raw)
        if recorder is not None:
            recorder.put(topic, data)
        publishers[topic].publish(data)
        if recorder is not None:
            recorder.flush()
        report.published[topic] = report.published.get(topic, 0) + 1
        if topic in frames:
            frames[topic] += 1
    return (first_log or 0), start_ns


def _settle(recorder: _Recorder, options: ReplayOptions) -> None:
    """Wait until the node's outputs stop arriving (settle_s without one) or max_settle_s passed."""
    end = time.monotonic()
    deadline = end + options.max_settle_s
    while time.monotonic() < deadline:
        with recorder.lock:
            last = max(recorder.last_receive, end)
        recorder.flush()
        if time.monotonic() - last >= options.settle_s:
            return
        time.sleep(0.05)


def _copy_shifted(reader: BagReader, topics: list[str], recorder: _Recorder, timeline: tuple[int, int], rate: float) -> None:
    """Copy ground truth into the recording, its log times moved onto the replay's wall-clock timeline."""
    first_log, start_ns = timeline
    for topic, log_time, raw in reader.messages(topics):
        recorder.put(topic, bytes(raw), log_time_ns=start_ns + int((log_time - first_log) / rate))
    recorder.flush()
