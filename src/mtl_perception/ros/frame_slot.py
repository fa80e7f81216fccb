"""Latest-frame-wins hand-overs: subscription callback -> inference stage -> publishing stage.

A slot holds at most one item: a new item replaces an unprocessed one (counted as dropped), so no
queue can grow however far the camera outruns inference, or inference outruns publishing. Slots made with
one shared ``threading.Condition`` (every camera's slot and the inference stage's waits, ``ros/stages.py``)
wake whoever waits on it for any of them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Frame:
    """One received message and when it arrived (time.monotonic seconds)."""

    msg: Any
    received: float
    compressed: bool = False


class LatestFrameSlot(Generic[T]):
    """A one-element mailbox: ``put`` never blocks, ``take`` waits for the newest item."""

    def __init__(self, condition: threading.Condition | None = None) -> None:
        self._cond = condition or threading.Condition()
        self._frame: T | None = None
        self._closed = False
        self.received = 0  # frames put
        self.dropped = 0  # frames replaced before the worker took them

    def put(self, frame: T) -> T | None:
        """Store ``frame``; returns the unprocessed item it replaced (a drop), else None."""
        with self._cond:
            replaced = self._frame
            self._frame = frame
            self.received += 1
            if replaced is not None:
                self.dropped += 1
            self._cond.notify_all()
            return replaced

    @property
    def has_frame(self) -> bool:
        """True while an item waits to be taken."""
        return self._frame is not None

    def take(self, timeout: float | None = None) -> T | None:
        """The newest frame (removing it), or None after ``timeout`` seconds (0: at once) or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._frame is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._closed:  # an item put after close (a stage finishing its work) is never handed out
                return None
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        """Wake every waiter; later ``take`` calls return None at once."""
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept frames again after ``close`` (counters keep running)."""
        with self._cond:
            self._closed = False
            self._frame = None

    @property
    def closed(self) -> bool:
        return self._closed
