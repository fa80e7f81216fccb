"""Thread-safe running statistics for the node's diagnostics: event rates, stage latencies, counters."""
from __future__ import annotations

import collections
import threading
import time
from typing import Iterable

import numpy as np

# decode: a view of the camera bytes; graph: the deploy graph; messages: filling them from its buffers
STAGES = ("decode", "graph", "messages", "publish")


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window (0 with fewer than two events)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def last(self) -> float | None:
        with self._lock:
            return self._times[-1] if self._times else None


class LatencyWindow:
    """The last ``size`` durations (seconds) of each named stage; median and 95th percentile."""

    def __init__(self, stages: Iterable[str] = STAGES + ("total",), size: int = 300) -> None:
        self._samples = {stage: collections.deque(maxlen=size) for stage in stages}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)

    def summary(self) -> dict[str, tuple[float, float] | None]:
        """stage -> (median, p95) in seconds, or None when the stage has no samples yet."""
        with self._lock:
            copies = {stage: list(values) for stage, values in self._samples.items()}
        return {stage: (float(np.median(v)), float(np.percentile(v, 95))) if v else None for stage, v in copies.items()}

    def clear(self) -> None:
        with self._lock:
            for values in self._samples.values():
                values.clear()


class Counters:
    """Named monotonic counters plus the latest problem text of each kind."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()
        self._last_problem: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def problem(self, kind: str, text: str) -> None:
        """Count one failure of ``kind`` and remember its description and time."""
        with self._lock:
            self._counts[kind] += 1
            self._last_problem[kind] = (time.monotonic(), text)

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def recent_problems(self, since: float) -> dict[str, str]:
        """kind -> latest description, for problems recorded at or after ``since`` (monotonic)."""
        with self._lock:
            return {kind: text for kind, (when, text) in self._last_problem.items() if when >= since}
