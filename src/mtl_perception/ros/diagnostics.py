"""The node's health as a diagnostic_msgs/DiagnosticStatus: level rules and key/value figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
BACKEND_FAILURE = "backend_failure"  # problem kind: the backend failed at run time (ERROR for that period)


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


def assess(health: Health) -> tuple[int, str]:
    """(level, one-line message) from the rules below, most severe first.

    ERROR: the backend cannot load or run the model, it failed at run time this period (even when a
    fallback backend took over), or every frame of the period failed.
    WARN: some frames failed this period, another problem was reported this period (e.g. bad camera
    info), or no input for longer than the stall timeout while active.
    OK otherwise (including unconfigured/inactive, which say so).
    """
    if health.backend_error:
        return ERROR, f"cannot run the model: {health.backend_error}"
    if BACKEND_FAILURE in health.problems:  # the configured backend broke this period; a fallback may be serving
        return ERROR, f"{BACKEND_FAILURE}: {health.problems[BACKEND_FAILURE]}"
    if health.state != "active":
        return OK, f"{health.state}: not processing frames (activate the node to start)"
    problem_text = "; ".join(f"{kind}: {text}" for kind, text in sorted(health.problems.items()))
    if health.failed_in_period and not health.processed_in_period:
        return ERROR, f"all {health.failed_in_period} frame(s) failed in the last period: {problem_text}"
    if health.failed_in_period:
        return WARN, f"{health.failed_in_period} frame(s) failed in the last period: {problem_text}"
    if health.problems:
        return WARN, problem_text
    waited = health.seconds_since_input if health.seconds_since_input is not None else health.seconds_active
    if waited > health.stall_timeout_s:
        return WARN, f"no input on '{health.input_topic}' for {waited:.1f} s; check the camera and the topic remapping"
    return OK, "processing"


def make_status(name: str, hardware_id: str, level: int, message: str, values: dict[str, Any]) -> Any:
    """A DiagnosticStatus with every value rendered as text (floats with 3 decimals)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    def text(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    status = DiagnosticStatus(name=name, hardware_id=hardware_id, message=message)
    status.level = bytes([level])
    status.values = [KeyValue(key=key, value=text(value)) for key, value in values.items()]
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
