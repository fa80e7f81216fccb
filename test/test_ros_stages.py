"""The node's two stages without ROS: order, drops per stage, batching by layout and padding, retry after a
fallback, frames held for a building engine, the rate limit, and stopping with frames in flight.

The pipeline and the outputs are stand-ins that record what the stages hand them and block where a test
holds them (events), except one test that batches two cameras through the real deploy graph of the tiny model.
Every wait is on an event or a condition, never a sleep.
"""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from mtl_perception.inference.frame_pipeline import FrameOutputs, GraphPending
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.ros import parameters as params
from mtl_perception.ros.camera_channel import CameraChannel, CameraSpec
from mtl_perception.ros.diagnostics import ProblemLog
from mtl_perception.ros.frame_slot import Frame
from mtl_perception.ros.stages import Inferred, Stages

WAIT_S = 20.0  # the longest any event is waited for (a stuck stage fails the test, it never hangs it)
SIZE_A, SIZE_B = (96, 128), (48, 64)
GATE = "gate"  # a camera of every rig that nobody subscribes to: a frame of it holds stage 1 where a test wants it


def image(stamp: int, size: tuple[int, int] = SIZE_A, value: int | None = None) -> SimpleNamespace:
    """A sensor_msgs/Image-shaped message (rgb8) whose header stamp is ``stamp`` seconds."""
    height, width = size
    pixels = np.full((height, width, 3), stamp % 256 if value is None else value, np.uint8)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=stamp, nanosec=0), frame_id=f"cam_{stamp}")
    return SimpleNamespace(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=pixels.tobytes())


class Calls:
    """A count of events with a condition to wait on, and per-event gates a test may hold closed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0
        self.gates: dict[int, threading.Event] = {}

    def hold(self, index: int) -> threading.Event:
        """Make event ``index`` (1-based) wait until the returned event is set."""
        self.gates[index] = threading.Event()
        return self.gates[index]

    def enter(self) -> None:
        with self.cond:
            self.count += 1
            index = self.count
            self.cond.notify_all()
        gate = self.gates.get(index)
        if gate is not None:
            assert gate.wait(WAIT_S), f"event {index} was held and never released"

    def wait(self, count: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= count, WAIT_S)


class FakePipeline:
    """The part of FramePipeline stage 1 uses; records each call's frames (stamps by pixel value) and capacity."""

    metadata = SimpleNamespace(tasks=("depth", "semantic", "normals"), input_height=64, input_width=96)

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls = Calls()
        self.batches: list[tuple[list[int], int | None]] = []
        self.fail = fail
        self.building: set[tuple[int, int, str]] = set()
        self.pending_calls = Calls()

    def run_batch(self, frames: list[tuple[np.ndarray, str, Any]], outputs: Any, capacity: int | None = None) -> list[FrameOutputs]:
        self.calls.enter()
        if self.fail is not None:
            raise self.fail
        for pixels, encoding, _ in frames:
            if self.building and (*pixels.shape[:2], encoding) in self.building:
                raise GraphPending(SimpleNamespace(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, batch=len(frames), outputs=tuple(outputs)))
        self.batches.append(([int(pixels[0, 0, 0]) for pixels, _, _ in frames], capacity))
        return [FrameOutputs({"depth": pixels[..., 0].astype(np.float32)}, None, pixels.shape[:2]) for pixels, _, _ in frames]

    def pending(self, height: int, width: int, encoding: str) -> bool:
        busy = (height, width, encoding) in self.building
        self.pending_calls.enter()
        return busy

    @staticmethod
    def check_camera_info(info: Any, height: int, width: int) -> None:
        pass


class FakeBackend:
    """The backend in service: a pipeline, and a fallback that swaps in ``fallback`` once (when given)."""

    def __init__(self, pipeline: Any, fallback: Any = None) -> None:
        self.pipeline = pipeline
        self.fallback = fallback
        self.kind = "fake (gpu)"
        self.error: str | None = None
        self.fallen_back: list[str] = []
        self.planned: list[tuple[int, int, str]] = []

    def fall_back(self, exc: Exception) -> bool:
        if self.fallback is None or self.pipeline is self.fallback:
            return False
        self.fallen_back.append(str(exc))
        self.pipeline, self.kind = self.fallback, "fake (cpu)"
        return True

    def plan_layout(self, height: int, width: int, encoding: str) -> None:
        self.planned.append((height, width, encoding))


class FakeOutputs:
    """Records every published frame as (camera name, stamp, its depth buffer); publishing may be held."""

    def __init__(self, subscribed: tuple[str, ...] = ("depth", "semantic")) -> None:
        self.subscribed = subscribed
        self.calls = Calls()
        self.asked = Calls()  # subscriber counts asked for: stage 1 begins a frame
        self.published: list[tuple[str, int, np.ndarray | None]] = []

    def subscribers(self, camera: CameraChannel) -> dict[str, int]:
        self.asked.enter()
        return {key: 1 for key in self.subscribed} if camera.spec.name != GATE else {}

    def input_topic(self, camera: CameraChannel) -> str:
        return f"/{camera.spec.name}/image"

    def messages(self, item: Inferred) -> dict[str, Any]:
        assert item.result is not None
        depth = item.result.arrays.get("depth")
        return {"stamp": item.frame.msg.header.stamp.sec, "depth": None if depth is None else depth.copy()}

    def publish(self, camera: CameraChannel, messages: dict[str, Any]) -> None:
        self.calls.enter()
        with self.calls.cond:
            self.published.append((camera.spec.name, messages["stamp"], messages["depth"]))
            self.calls.cond.notify_all()

    def stamps(self, camera: str | None = None) -> list[int]:
        with self.calls.cond:
            return [stamp for name, stamp, _ in self.published if camera is None or name == camera]

    def wait_for(self, predicate: Callable[[list[int]], bool]) -> bool:
        with self.calls.cond:
            return self.calls.cond.wait_for(lambda: predicate([stamp for _, stamp, _ in self.published]), WAIT_S)


class Rig:
    """Stages over fake (or given) backend and outputs, with cameras made on the stages' arrivals condition."""

    def __init__(self, backend: Any, names: tuple[str, ...] = ("front",), outputs: FakeOutputs | None = None, **values: Any) -> None:
        self.values = values
        self.settings = params.settings_from_values(values)
        self.backend = backend
        self.outputs = outputs or FakeOutputs()
        self.warnings: list[str] = []
        self._warned = threading.Condition()
        self.problems = ProblemLog(self._warn)
        self.stages = Stages(lambda: self.settings, backend, self.outputs, self.problems)
        self.cameras = {name: CameraChannel(CameraSpec(name, f"{name}/image", f"{name}/camera_info", False, name), self.stages.arrivals)
                        for name in (*names, GATE)}
        self.stages.start(list(self.cameras.values()))

    def _warn(self, line: str) -> None:
        with self._warned:
            self.warnings.append(line)
            self._warned.notify_all()

    def wait_warning(self, text: str) -> bool:
        """Wait for a logged problem containing ``text`` (logged after it was counted)."""
        with self._warned:
            return self._warned.wait_for(lambda: any(text in line for line in self.warnings), WAIT_S)

    def wait_stopping(self) -> bool:
        """Wait until ``stop`` has closed the cameras' slots (it closes the hand-off to stage 2 before them)."""
        with self.stages.arrivals:  # the slots' shared condition: close() notifies it
            return self.stages.arrivals.wait_for(lambda: all(camera.slot.closed for camera in self.cameras.values()), WAIT_S)

    def set(self, **values: Any) -> None:
        """A run-time parameter change, as the node applies it (then wakes the stages)."""
        self.values.update(values)
        self.settings = params.settings_from_values(self.values)
        self.stages.wake()

    def send_together(self, frames: list[tuple[str, Any]]) -> None:
        """Send ``frames`` while stage 1 is held with a frame of the ``gate`` camera (which nobody subscribes to):
        its next gather finds all of them in their slots at once, whatever batch_wait_ms allows."""
        asked = self.outputs.asked
        release = asked.hold(asked.count + 1)
        self.send(GATE, image(0))
        assert asked.wait(asked.count + 1)
        for camera, msg in frames:
            self.send(camera, msg)
        release.set()

    def send(self, camera: str, msg: Any) -> Any:
        """What the node's image callback does: count the arrival, put the frame (waking stage 1)."""
        channel = self.cameras[camera]
        channel.input_rate.tick()
        return channel.slot.put(Frame(msg, 0.0))


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    """``Rig(...)``, stopped after the test."""
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        made.append(Rig(*args, **kwargs))
        return made[-1]

    yield make
    for rig in made:
        rig.stages.stop()


def test_stage_one_serves_the_newest_frame_and_counts_the_ones_it_replaced(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline))
    release = pipeline.calls.hold(1)
    rig.send("front", image(1))
    assert pipeline.calls.wait(1)  # stage 1 is inside the graph with frame 1
    for stamp in (2, 3, 4):
        rig.send("front", image(stamp))
    camera = rig.cameras["front"]
    assert (camera.slot.received, camera.slot.dropped) == (4, 2)  # 2 and 3 were replaced before inference
    infer_four = pipeline.calls.hold(2)  # frame 4 waits until frame 1 is published (else it may replace it at the hand-off)
    release.set()
    assert rig.outputs.calls.wait(1)
    infer_four.set()
    assert rig.outputs.wait_for(lambda stamps: stamps == [1, 4])
    assert camera.counters.get("processed") == 2 and camera.dropped_before_publishing == 0
    assert pipeline.batches == [([1], 1), ([4], 1)]
    assert rig.backend.planned == [(*SIZE_A, "rgb8")]  # the camera's layout was planned once
    summary = camera.latency.summary()
    assert all(summary[stage] is not None for stage in ("decode", "graph", "messages", "publish", "total"))


def test_stage_two_keeps_the_newest_batch_and_counts_the_ones_it_replaced(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline))
    publish_one = rig.outputs.calls.hold(1)
    infer_four = pipeline.calls.hold(4)
    rig.send("front", image(1))
    assert rig.outputs.calls.wait(1)  # stage 2 is publishing frame 1
    for stamp in (2, 3, 4):
        rig.send("front", image(stamp))
        assert pipeline.calls.wait(stamp)  # stage 1 took it: nothing is replaced before inference
    # frame 4 is in the graph, so frame 3 was handed over, replacing frame 2 that stage 2 had not taken
    camera = rig.cameras["front"]
    assert camera.dropped_before_publishing == 1 and camera.slot.dropped == 0
    publish_one.set()
    assert rig.outputs.calls.wait(2)  # stage 2 took frame 3 before frame 4 leaves the graph
    infer_four.set()
    assert rig.outputs.wait_for(lambda stamps: stamps == [1, 3, 4])
    assert camera.counters.get("processed") == 3


def test_cameras_are_batched_by_layout_and_a_short_batch_is_counted_as_padding(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    names = ("a", "b", "c", "d", "e")
    rig = make_rig(FakeBackend(pipeline), names, **{"processing.batch_wait_ms": 0.0, "processing.max_batch": 4})
    rig.send_together([(name, image(stamp, SIZE_B if name == "e" else SIZE_A)) for stamp, name in enumerate(names, start=10)])
    assert rig.outputs.wait_for(lambda stamps: len(stamps) == 5)
    # one call per layout, frames in camera order; each camera's frame published on that camera
    assert pipeline.batches == [([10, 11, 12, 13], 4), ([14], 1)]
    assert sorted(item[:2] for item in rig.outputs.published) == [(name, stamp) for stamp, name in enumerate(names, start=10)]
    assert rig.stages.figures().padding_frames == 0
    # three of the four cameras of layout A: a batch of 3 runs in the graph of 4, one place padded
    rig.send_together([("a", image(21)), ("b", image(22)), ("c", image(23))])
    assert rig.outputs.wait_for(lambda stamps: len(stamps) == 8)
    assert pipeline.batches[-1] == ([21, 22, 23], 4)
    figures = rig.stages.figures()
    assert figures.padding_frames == 1 and dict(figures.batch_sizes) == {4: 1, 1: 1, 3: 1}
    assert rig.cameras[GATE].counters.get("skipped_no_subscribers") == 2
    assert figures.graph_busy_s > 0 and rig.stages.figures(new_period=True).graph_busy_s > 0 and rig.stages.figures().graph_busy_s == 0


def test_max_batch_splits_a_layout_into_several_calls(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    names = ("a", "b", "c")
    rig = make_rig(FakeBackend(pipeline), names, **{"processing.max_batch": 2})
    rig.send_together([(name, image(stamp)) for stamp, name in enumerate(names, start=30)])
    assert rig.outputs.wait_for(lambda stamps: len(stamps) == 3)
    assert pipeline.batches == [([30, 31], 2), ([32], 2)]  # three cameras of one layout, at most two per call
    assert rig.stages.figures().padding_frames == 0  # the one left over runs in the graph of 1 (graph_batch_sizes(2) == [1, 2])


def test_a_batch_the_backend_fails_on_runs_again_on_the_fallback(make_rig: Callable[..., Rig]) -> None:
    broken, fallback = FakePipeline(RuntimeError("CUDA error: an illegal memory access was encountered")), FakePipeline()
    rig = make_rig(FakeBackend(broken, fallback))
    rig.send("front", image(40))
    assert rig.outputs.wait_for(lambda stamps: stamps == [40])
    assert broken.calls.count == 1 and fallback.batches == [([40], 1)]
    assert rig.backend.fallen_back == ["CUDA error: an illegal memory access was encountered"] and rig.backend.error is None
    assert rig.cameras["front"].counters.get("failed") == 0 and rig.problems.backend.get("inference_error") == 0


def test_without_a_fallback_the_failure_is_counted_and_the_next_frame_served(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline(ModelFileError("deploy graph file is truncated or corrupt"))
    rig = make_rig(FakeBackend(pipeline))
    camera = rig.cameras["front"]
    rig.send("front", image(50))
    assert rig.wait_warning("inference failed on fake (gpu): deploy graph file is truncated or corrupt [inference_error #1;")
    assert rig.outputs.stamps() == [] and rig.problems.backend.get("inference_error") == 1
    assert camera.counters.get("failed") == 1 and "truncated or corrupt" in (rig.backend.error or "")
    # a bad frame (the frames' fault, not the backend's): rejected on its camera, no fallback asked for
    pipeline.fail = ValueError("cannot take 7-channel frames")
    rig.send("front", image(51))
    assert rig.wait_warning("[front] frame on '/front/image' rejected")
    assert camera.counters.get("bad_input") == 1 and rig.problems.backend.get("inference_error") == 1
    assert "frame on '/front/image' rejected: cannot take 7-channel frames" in camera.counters.recent_problems(0.0)["bad_input"]
    pipeline.fail = None
    rig.send("front", image(52))
    assert rig.outputs.wait_for(lambda stamps: stamps == [52])
    assert rig.backend.error is None and camera.counters.get("failed") == 2


def test_a_frame_waits_for_its_layouts_first_engine_and_is_served_once_built(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    pipeline.building.add((*SIZE_A, "rgb8"))
    rig = make_rig(FakeBackend(pipeline))
    camera = rig.cameras["front"]
    rig.send("front", image(60))
    assert pipeline.pending_calls.wait(1)  # stage 1 asks whether the engine still builds once it has counted the frame as waiting
    assert camera.counters.get("waiting_for_engine") == 1 and rig.outputs.stamps() == []
    pipeline.building.clear()  # the engine is built: the builder's callback wakes the stages
    rig.stages.wake()
    assert rig.outputs.wait_for(lambda stamps: stamps == [60])  # the held frame itself, no new frame needed
    assert camera.counters.get("waiting_for_engine") == 1


def test_frames_nobody_subscribes_to_are_not_computed(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline), outputs=FakeOutputs(subscribed=()))
    camera = rig.cameras["front"]
    rig.send("front", image(70))
    assert rig.outputs.asked.wait(1)
    assert rig.stages.stop() == []  # joins stage 1: its count of the frame is done
    assert camera.counters.get("skipped_no_subscribers") == 1 and pipeline.calls.count == 0


def test_a_rate_limit_change_takes_effect_in_the_wait_already_begun(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline), **{"processing.max_rate_hz": 1e-12})  # one frame per ~30000 years: stage 1 starts in the rate wait
    rig.send("front", image(80))
    rig.set(**{"processing.max_rate_hz": 0.0})
    assert rig.outputs.wait_for(lambda stamps: stamps == [80]), "the inference stage stalled in the rate wait"
    rig.send("front", image(81))
    assert rig.outputs.wait_for(lambda stamps: stamps == [80, 81])
    assert rig.stages.running


def test_stop_with_frames_in_flight_publishes_nothing_more_and_restarts_clean(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline))
    release = pipeline.calls.hold(1)
    rig.send("front", image(90))
    assert pipeline.calls.wait(1)  # frame 90 in the graph
    rig.send("front", image(91))  # frame 91 waiting in the camera's slot
    stuck: list[list[str]] = []
    stopper = threading.Thread(target=lambda: stuck.append(rig.stages.stop()))
    stopper.start()
    assert rig.wait_stopping()
    release.set()  # the graph call ends while the stages stop
    stopper.join(WAIT_S)
    assert stuck == [[]] and not rig.stages.running
    assert rig.outputs.stamps() == [] and pipeline.calls.count == 1  # 90's buffers were not published, 91 not inferred
    rig.stages.start(list(rig.cameras.values()))
    assert rig.stages.running
    rig.send("front", image(92))
    assert rig.outputs.wait_for(lambda stamps: stamps == [92])


def test_stop_while_publishing_waits_for_stage_two(make_rig: Callable[..., Rig]) -> None:
    pipeline = FakePipeline()
    rig = make_rig(FakeBackend(pipeline))
    release = rig.outputs.calls.hold(1)
    rig.send("front", image(95))
    assert rig.outputs.calls.wait(1)
    rig.send("front", image(96))
    assert pipeline.calls.wait(2)  # 96 inferred and handed over while 95 is being published
    stuck: list[list[str]] = []
    stopper = threading.Thread(target=lambda: stuck.append(rig.stages.stop()))
    stopper.start()
    assert rig.wait_stopping()
    release.set()
    stopper.join(WAIT_S)
    assert stuck == [[]] and not rig.stages.running
    assert rig.outputs.stamps() == [95]  # the hand-off was closed: 96 is dropped, not published after the stop


def test_two_cameras_batched_in_the_real_deploy_graph_match_single_frames(tiny_model: Path) -> None:
    from mtl_perception.ros import engine_plan

    settings = params.settings_from_values({"model.path": str(tiny_model)})
    pipeline = engine_plan.node_pipeline(settings, tiny_model, "onnxruntime", "cpu", 2)
    rig = Rig(FakeBackend(pipeline), ("left", "right"), outputs=FakeOutputs(subscribed=("depth",)), **{"model.path": str(tiny_model)})
    try:
        rng = np.random.default_rng(0)
        frames = {(name, stamp): rng.integers(0, 256, (*SIZE_A, 3), dtype=np.uint8) for name, stamp in (("left", 100), ("right", 101))}
        messages = []
        for (name, stamp), pixels in frames.items():
            msg = image(stamp)
            msg.data = pixels.tobytes()
            messages.append((name, msg))
        rig.send_together(messages)
        assert rig.outputs.wait_for(lambda stamps: sorted(stamps) == [100, 101])
        assert dict(rig.stages.figures().batch_sizes) == {2: 1}  # both cameras in one call
        for name, stamp, depth in rig.outputs.published:
            (single,) = pipeline.run_batch([(frames[name, stamp], "rgb8", None)], {"depth"})
            assert depth is not None and depth.shape == SIZE_A and depth.dtype == np.float32
            np.testing.assert_allclose(depth, single.arrays["depth"], rtol=1e-4, atol=1e-4, err_msg=f"{name} (stamp {stamp})")
    finally:
        rig.stages.stop()
        pipeline.close()

