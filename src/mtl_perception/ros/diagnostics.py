"""The node's health as a diagnostic_msgs/DiagnosticStatus: level rules and key/value figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
