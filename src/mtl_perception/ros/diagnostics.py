"""The node's health as diagnostic_msgs/DiagnosticStatus messages: level rules, key/value figures, their assembly
per camera (and for the shared backend when there are several), and the throttled problem log that feeds them.

Pure: the node hands in a ``NodeView`` (its state, cameras, backend and stage figures) and publishes what
``Diagnostics.tick`` returns; nothing here needs a ROS graph (diagnostic_msgs is imported in ``make_status``).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mtl_perception.ros.camera_channel import CameraChannel
from mtl_perception.ros.stats import Counters

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
# Every text echoed into /diagnostics is cut to a fixed length (with "…"): a 1 MB encoding string or topic name
# from a bad publisher must not be copied whole into every status message.
MAX_MESSAGE_CHARS = 400  # DiagnosticStatus.message
MAX_PROBLEM_CHARS = 160  # each problem inside the message
MAX_VALUE_CHARS = 128  # each KeyValue.value
MAX_KEY_CHARS = 64  # each KeyValue.key
MAX_NAME_CHARS = 128  # DiagnosticStatus.name and hardware_id


def clip(text: object, limit: int) -> str:
    """``text`` as a string of at most ``limit`` characters (cut ones end in "…")."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


LOG_THROTTLE_S = 5.0  # a problem of one kind (per camera) is logged at most this often
BACKEND_FAILURE = "backend_failure"  # problem kind: the backend failed at run time (ERROR for that period)
CACHE_FILE_REBUILT = "cache_file_rebuilt"  # problem kind: a damaged cache file was found and rebuilt (WARN for that period)


class CacheRepairs:
    """The damaged cache files (deploy graphs, precision files, engines, timing and calibration caches) found and
    rebuilt in this process since this object was made (``fileio.report_damaged``): a count, and the new ones per tick.

    The record is the process's: nodes sharing a process (composition) each count every repair made after their start.
    """

    def __init__(self) -> None:
        from mtl_perception.fileio import cache_repairs

        self._start = self._seen = cache_repairs()[0]

    def count(self) -> int:
        from mtl_perception.fileio import cache_repairs

        return cache_repairs()[0] - self._start

    def new(self) -> list[str]:
        """One line per repair since the last call (at most the latest ``fileio.MAX_REPAIRS_KEPT``)."""
        from mtl_perception.fileio import cache_repairs

        total, latest = cache_repairs()
        fresh = latest[len(latest) - min(total - self._seen, len(latest)):] if total > self._seen else []
        self._seen = total
        return [f"{repair.path}: {repair.reason}; {repair.action}" for repair in fresh]


@dataclass
class Health:
    """What the diagnostics timer knows at one tick."""

    state: str  # lifecycle state label: unconfigured | inactive | active | finalized
    seconds_since_input: float | None  # None: no frame yet since activation
    seconds_active: float  # time since activation (0 when not active)
    stall_timeout_s: float
    input_topic: str
    processed_in_period: int  # frames fully processed since the last tick
    failed_in_period: int  # frames that failed (bad input or inference) since the last tick
    problems: dict[str, str] = field(default_factory=dict)  # kind -> latest description, this period
    backend_error: str | None = None  # model not loaded / inference failing
    building: str = ""  # deploy engines being built off the serving thread (what, since when); '' = none


def assess(health: Health) -> tuple[int, str]:
    """(level, one-line message) from the rules below, most severe first.

    ERROR: the backend cannot load or run the model, it failed at run time this period (even when a
    fallback backend took over), or every frame of the period failed.
    WARN: some frames failed this period, another problem was reported this period (e.g. bad camera
    info), a deploy engine is being built (enabled outputs wait for it), or no input for longer than the
    stall timeout while active.
    OK otherwise (including unconfigured/inactive, which say so).
    """
    level, message = _assess(health)
    return level, clip(message, MAX_MESSAGE_CHARS)


def _assess(health: Health) -> tuple[int, str]:
    if health.backend_error:
        return ERROR, f"cannot run the model: {clip(health.backend_error, MAX_PROBLEM_CHARS)}"
    if BACKEND_FAILURE in health.problems:  # the configured backend broke this period; a fallback may be serving
        return ERROR, f"{BACKEND_FAILURE}: {clip(health.problems[BACKEND_FAILURE], MAX_PROBLEM_CHARS)}"
    if health.state != "active":
        return OK, f"{health.state}: not processing frames (activate the node to start)"
    problem_text = "; ".join(f"{clip(kind, MAX_KEY_CHARS)}: {clip(text, MAX_PROBLEM_CHARS)}" for kind, text in sorted(health.problems.items()))
    if health.failed_in_period and not health.processed_in_period:
        return ERROR, f"all {health.failed_in_period} frame(s) failed in the last period: {problem_text}"
    if health.failed_in_period:
        return WARN, f"{health.failed_in_period} frame(s) failed in the last period: {problem_text}"
    if health.problems:
        return WARN, problem_text
    if health.building:
        return WARN, f"building deploy engine(s) off the serving thread: {clip(health.building, MAX_PROBLEM_CHARS)}; the engine in service serves what it has meanwhile"
    waited = health.seconds_since_input if health.seconds_since_input is not None else health.seconds_active
    if waited > health.stall_timeout_s:
        return WARN, f"no input on '{clip(health.input_topic, MAX_NAME_CHARS)}' for {waited:.1f} s; check the camera and the topic remapping"
    return OK, "processing"


def make_status(name: str, hardware_id: str, level: int, message: str, values: dict[str, Any]) -> Any:
    """A DiagnosticStatus with every value rendered as text (floats with 3 decimals), every field cut to its MAX_*_CHARS."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    def text(value: Any) -> str:
        return clip(f"{value:.3f}" if isinstance(value, float) else value, MAX_VALUE_CHARS)

    status = DiagnosticStatus(name=clip(name, MAX_NAME_CHARS), hardware_id=clip(hardware_id, MAX_NAME_CHARS), message=clip(message, MAX_MESSAGE_CHARS))
    status.level = bytes([level])
    status.values = [KeyValue(key=clip(key, MAX_KEY_CHARS), value=text(value)) for key, value in values.items()]
    return status


def latency_values(summary: dict[str, tuple[float, float] | None]) -> dict[str, Any]:
    """Per-stage latency figures in milliseconds: <stage>_median_ms, <stage>_p95_ms."""
    values: dict[str, Any] = {}
    for stage, pair in summary.items():
        if pair is None:
            values[f"latency_{stage}_median_ms"] = values[f"latency_{stage}_p95_ms"] = "n/a"
        else:
            values[f"latency_{stage}_median_ms"] = pair[0] * 1e3
            values[f"latency_{stage}_p95_ms"] = pair[1] * 1e3
    return values


class ProblemLog:
    """Problems of the cameras and of the shared backend: counted, kept for diagnostics, logged at most once per
    ``throttle_s`` per camera and kind through ``warn``."""

    def __init__(self, warn: Callable[[str], None], throttle_s: float = LOG_THROTTLE_S) -> None:
        self.backend = Counters()  # problems of the shared backend (fallbacks, inference errors, engine builds)
        self._warn = warn
        self._throttle_s = throttle_s
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def report(self, camera: CameraChannel | None, kind: str, text: str) -> None:
        """Count a problem of ``camera`` (None: of the shared backend) and log it unless one of its kind was just logged."""
        counters = camera.counters if camera is not None else self.backend
        counters.problem(kind, text)
        now = time.monotonic()
        key = f"{camera.spec.name if camera is not None else ''}/{kind}"
        with self._lock:
            if now - self._last_log.get(key, -1e9) < self._throttle_s:
                return
            self._last_log[key] = now
        where = f"[{camera.spec.name}] " if camera is not None and camera.spec.name else ""
        self._warn(f"{where}{text} [{kind} #{counters.get(kind)}; repeats of this kind are logged at most every {self._throttle_s:.0f} s]")


@dataclass
class BackendFigures:
    """The backend in service as the diagnostics report it (``ros/serving.py``)."""

    kind: str = ""  # "onnxruntime (cpu)", ...; "" while none is loaded
    model: str = ""
    model_sha256: str = ""
    graphs_built: int = 0
    engine_outputs: str = "none"  # the outputs engines are built for ("per subscribed set" off TensorRT)
    engine_building: str = ""  # what builds off the serving thread and since when; "" when nothing
    error: str | None = None  # why the model cannot load or run


@dataclass
class StageFigures:
    """The inference stage's figures (``ros/stages.py``): batches by size, graph time and padding."""

    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    graph_busy_s: float = 0.0  # time inside the deploy graph since the last diagnostics tick
    padding_frames: int = 0  # batch places filled with a copy to reach a built graph size
    started_at: float = 0.0  # time.monotonic() when the stages last started


@dataclass
class NodeView:
    """What one diagnostics tick (or ``diagnostics_values``) reads of the node."""

    name: str
    fully_qualified_name: str
    state: str  # the lifecycle state's label
    cameras: Sequence[CameraChannel]
    input_topics: dict[str, str]  # camera name -> its resolved input topic
    backend: BackendFigures
    stages: StageFigures
    stall_timeout_s: float = 2.0


class Diagnostics:
    """Assembles the node's statuses each tick: one per camera, and one for the shared backend with several cameras."""

    def __init__(self, problems: ProblemLog) -> None:
        self.problems = problems
        self.cache_repairs = CacheRepairs()  # damaged cache files rebuilt since this node began
        self.last_tick = time.monotonic()

    def camera_values(self, view: NodeView, camera: CameraChannel | None) -> dict[str, Any]:
        """The figures the diagnostics report for one camera, with the shared backend's."""
        counts = camera.counters.snapshot() if camera is not None else {}
        backend = self.problems.backend.snapshot()
        dropped_inference = camera.slot.dropped if camera is not None else 0
        dropped_publishing = camera.dropped_before_publishing if camera is not None else 0
        values: dict[str, Any] = {
            "state": view.state,
            "camera": camera.spec.label if camera is not None else "",
            "input_topic": view.input_topics.get(camera.spec.name, "") if camera is not None else "",
            "input_rate_hz": camera.input_rate.rate() if camera is not None else 0.0,
            "output_rate_hz": camera.output_rate.rate() if camera is not None else 0.0,
            "frames_received": camera.slot.received if camera is not None else 0,
            "frames_processed": counts.get("processed", 0),
            "frames_dropped": dropped_inference + dropped_publishing,
            "frames_dropped_before_inference": dropped_inference,
            "frames_dropped_before_publishing": dropped_publishing,
            "frames_failed": counts.get("failed", 0),
            **{name: counts.get(kind, 0) for name, kind in CAMERA_COUNTS},
            "inference_errors": backend.get("inference_error", 0),
            "backend_fallbacks": backend.get("backend_fallbacks", 0),
            "cache_files_rebuilt": self.cache_repairs.count(),
            "backend": view.backend.kind or "none",
            "model": view.backend.model,
            "model_sha256": view.backend.model_sha256,
            "graphs_built": view.backend.graphs_built,
            "engine_outputs": view.backend.engine_outputs,
            "engine_building": view.backend.engine_building or "none",
        }
        if camera is not None:
            values.update(latency_values(camera.latency.summary()))
        return values

    def backend_values(self, view: NodeView, period_s: float) -> dict[str, Any]:
        """The shared backend's figures: batch-size histogram and the share of the period spent in the graph."""
        stages = view.stages
        return {
            "backend": view.backend.kind or "none",
            "cameras": len(view.cameras),
            "batch_sizes": " ".join(f"{size}:{count}" for size, count in sorted(stages.batch_sizes.items())) or "none",
            "graph_utilisation": min(1.0, stages.graph_busy_s / period_s) if period_s > 0 else 0.0,
            "padding_frames": stages.padding_frames,
            "graphs_built": view.backend.graphs_built,
            "engine_building": view.backend.engine_building or "none",
            "inference_errors": self.problems.backend.get("inference_error"),
            "backend_fallbacks": self.problems.backend.get("backend_fallbacks"),
            "cache_files_rebuilt": self.cache_repairs.count(),
            "model_sha256": view.backend.model_sha256,
        }

    def camera_health(self, view: NodeView, camera: CameraChannel, now: float, backend_problems: dict[str, str]) -> Health:
        """The camera's Health for this tick (its processed and failed counts since the last tick)."""
        last_input = camera.input_rate.last()
        counts = camera.counters.snapshot()
        in_period = {name: counts.get(name, 0) - camera.counts_at_last_tick.get(name, 0) for name in ("processed", "failed")}
        camera.counts_at_last_tick = counts
        started = view.stages.started_at
        return Health(
            state=view.state,
            seconds_since_input=None if last_input is None or last_input < started else now - last_input,
            seconds_active=now - started if view.state == "active" else 0.0,
            stall_timeout_s=view.stall_timeout_s,
            input_topic=view.input_topics.get(camera.spec.name, ""),
            processed_in_period=in_period["processed"],
            failed_in_period=in_period["failed"],
            problems={**camera.counters.recent_problems(self.last_tick), **backend_problems},
            backend_error=view.backend.error,
            building=view.backend.engine_building,
        )

    def tick(self, view: NodeView) -> list[Any]:
        """The DiagnosticStatus messages of this period; the next period starts now."""
        now = time.monotonic()
        period = now - self.last_tick
        for repair in self.cache_repairs.new():  # logged once where it was found; WARN on /diagnostics for this period
            self.problems.backend.problem(CACHE_FILE_REBUILT, repair)
        backend_problems = self.problems.backend.recent_problems(self.last_tick)
        statuses = []
        for camera in view.cameras:
            level, message = assess(self.camera_health(view, camera, now, backend_problems))
            name = f"{view.name}: perception" if not camera.spec.name else f"{view.name}: camera {camera.spec.name}"
            statuses.append(make_status(name, view.fully_qualified_name, level, message, self.camera_values(view, camera)))
        if len(view.cameras) > 1:
            level = max((status.level[0] for status in statuses), default=0)
            statuses.insert(0, make_status(f"{view.name}: perception", view.fully_qualified_name, level,
                                           f"{len(view.cameras)} cameras on one {view.backend.kind or 'unloaded'} backend",
                                           self.backend_values(view, period)))
        self.last_tick = now
        return statuses


# the per-camera counters reported as they are: diagnostics key -> counter name
CAMERA_COUNTS = (("frames_skipped_no_subscribers", "skipped_no_subscribers"), ("frames_waiting_for_engine", "waiting_for_engine"),
                 ("bad_input", "bad_input"), ("bad_camera_info", "bad_camera_info"), ("camera_info_mismatch", "camera_info_mismatch"),
                 ("camera_info_unmatched", "camera_info_unmatched"))
