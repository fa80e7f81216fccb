"""Latest-frame slot, running statistics and diagnostics levels (pure, no ROS graph)."""
from __future__ import annotations

import threading
import time

import pytest

from mtl_perception.ros.diagnostics import ERROR, OK, WARN, Health, assess, latency_values, make_status
from mtl_perception.ros.frame_slot import Frame, LatestFrameSlot
from mtl_perception.ros.stats import Counters, LatencyWindow, RateMeter


def test_slot_keeps_only_the_newest_frame_and_counts_drops() -> None:
    slot = LatestFrameSlot()
    assert slot.put(Frame("a", 0.0)) is None
    assert slot.put(Frame("b", 0.0)).msg == "a"  # the frame it replaced: a drop
    assert slot.put(Frame("c", 0.0)).msg == "b"
    assert slot.take(timeout=0).msg == "c"
    assert slot.take(timeout=0.01) is None
    assert (slot.received, slot.dropped) == (3, 2)


def test_slot_take_wakes_on_put_and_on_close() -> None:
    slot = LatestFrameSlot()
    got: list = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    worker.start()
    time.sleep(0.05)
    slot.put(Frame("x", 0.0))
    worker.join(2)
    assert got[0].msg == "x"
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    started = time.monotonic()
    worker.start()
    slot.close()
    worker.join(2)
    assert got[1] is None and time.monotonic() - started < 1.0
    assert slot.closed
    slot.reopen()
    slot.put(Frame("y", 0.0))
    assert slot.take(0).msg == "y"


def test_slot_never_grows_under_a_fast_producer() -> None:
    slot = LatestFrameSlot()
    taken = []

    def consume() -> None:
        while not slot.closed:
            frame = slot.take(timeout=0.1)
            if frame is not None:
                taken.append(frame.msg)
                time.sleep(0.005)  # a slow "inference"

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(2000):
        slot.put(Frame(i, 0.0))
    time.sleep(0.05)
    slot.close()
    worker.join(2)
    assert slot.received == 2000
    assert len(taken) + slot.dropped == 2000  # every frame either processed or counted as dropped
    assert taken == sorted(taken)


def test_rate_meter_and_latency_window() -> None:
    meter = RateMeter(window_s=10.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert meter.rate(now=101.0) == pytest.approx(10.0)
    assert meter.rate(now=200.0) == 0.0
    window = LatencyWindow(stages=("infer",), size=100)
    assert window.summary()["infer"] is None
    for ms in range(1, 101):
        window.add("infer", ms / 1000)
    median, p95 = window.summary()["infer"]
    assert median == pytest.approx(0.0505) and p95 == pytest.approx(0.09505)
    values = latency_values(window.summary())
    assert values["latency_infer_median_ms"] == pytest.approx(50.5)


def test_counters_keep_recent_problems() -> None:
    counters = Counters()
    before = time.monotonic()
    counters.problem("bad_input", "unsupported encoding 'yuv422'")
    counters.problem("bad_input", "truncated")
    assert counters.get("bad_input") == 2
    assert counters.recent_problems(before) == {"bad_input": "truncated"}
    assert counters.recent_problems(time.monotonic() + 1) == {}


def health(**changes) -> Health:
    fields = dict(state="active", seconds_since_input=0.1, seconds_active=10.0, stall_timeout_s=2.0, input_topic="/image", processed_in_period=10, failed_in_period=0)
    fields.update(changes)
    return Health(**fields)


def test_assess_levels() -> None:
    assert assess(health()) == (OK, "processing")
    level, message = assess(health(seconds_since_input=5.0))
    assert level == WARN and "no input on '/image' for 5.0 s" in message
    level, message = assess(health(seconds_since_input=None, seconds_active=3.0))
    assert level == WARN
    level, message = assess(health(failed_in_period=2, problems={"bad_input": "truncated"}))
    assert level == WARN and "bad_input: truncated" in message
    assert assess(health(failed_in_period=3, processed_in_period=0, problems={"bad_input": "x"}))[0] == ERROR
    assert assess(health(problems={"bad_camera_info": "fx=0"}))[0] == WARN
    assert assess(health(backend_error="CUDA out of memory"))[0] == ERROR
    assert assess(health(state="inactive", seconds_since_input=None))[0] == OK


def test_make_status_renders_values() -> None:
    status = make_status("node: perception", "/node", WARN, "msg", {"rate": 29.97, "count": 3})
    assert status.level == bytes([WARN])
    assert [(kv.key, kv.value) for kv in status.values] == [("rate", "29.970"), ("count", "3")]
