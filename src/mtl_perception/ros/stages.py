"""The node's two pipelined stages, as plain Python threads: inference (gather, decode, deploy graph) and publishing.

A camera callback only ``put``s its newest frame in its camera's one-slot mailbox; every camera's slot shares
``Stages.arrivals``, the one condition stage 1 waits on. Stage 1 ("inference") holds frames back to
``processing.max_rate_hz``, gathers the newest frame of every camera that has one (waiting at most
``processing.batch_wait_ms`` for the other live cameras), wraps their pixels and runs the deploy graph once per
camera layout (size and encoding) with the frames batched, at most ``processing.max_batch`` per call (a batch
below a built graph size is padded by the pipeline; the padding is counted here). A batch the backend fails on
runs once more after the fallback backend took over. A layout whose first engine is building keeps its
camera's newest frame (held, not queued) until it is built. Stage 2 ("publisher") takes the newest batch from a
one-slot hand-off (a batch replaced there is counted as dropped before publishing), has the ``Outputs`` fill
and publish the messages, and records the stage latencies.

What ROS does is injected: the backend in service (``Backend``: ``ros/serving.py`` in the node) and the
``Outputs`` (subscriber counts, messages, publishing); ``test/test_ros_stages.py`` runs them without a ROS graph.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mtl_perception.inference.frame_pipeline import CameraInfoMismatch, FrameOutputs, FramePipeline, GraphPending, graph_batch_size, graph_input
from mtl_perception.inference.image_codec import ImageDecodeError, compressed_msg_to_array, image_msg_to_array
from mtl_perception.inference.memory_budget import LARGE_FRAME_PIXELS, check_frame, release_freed_memory
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.ros import parameters as params
from mtl_perception.ros.camera_channel import CameraChannel
from mtl_perception.ros.diagnostics import ProblemLog, StageFigures
from mtl_perception.ros.frame_slot import Frame, LatestFrameSlot
from mtl_perception.ros.outputs import graph_outputs, wanted_outputs

LIVE_CAMERA_S = 1.0  # a camera that sent a frame this recently is waited for (batch_wait_ms) when batching
RATE_WAIT_SLICE_S = 0.5  # the rate limiter re-reads processing.max_rate_hz at least this often
IDLE_WAIT_S = 0.5  # the longest a stage waits before it looks at its stop flag again
STOP_TIMEOUT_S = 30.0  # how long stop() waits for each stage thread


@dataclass
class Inferred:
    """A frame of one camera through stage 1: its pixels and camera info, then its graph buffers and stage times."""

    camera: CameraChannel
    frame: Frame
    result: FrameOutputs | None
    wanted: set[str]
    times: dict[str, float] = field(default_factory=dict)
    pixels: tuple[np.ndarray, str] | None = None  # as the deploy graph takes them
    info: Any = None  # the CameraInfo matched to the frame's stamp


class Backend(Protocol):
    """What stage 1 needs of the backend in service."""

    kind: str
    error: str | None

    @property
    def pipeline(self) -> FramePipeline | None: ...

    def fall_back(self, exc: Exception) -> bool: ...

    def plan_layout(self, height: int, width: int, encoding: str) -> None: ...


class Outputs(Protocol):
    """Where the stages' results go (the node's topics)."""

    def subscribers(self, camera: CameraChannel) -> dict[str, int]: ...

    def input_topic(self, camera: CameraChannel) -> str: ...

    def messages(self, item: Inferred) -> dict[str, Any]: ...

    def publish(self, camera: CameraChannel, messages: dict[str, Any]) -> None: ...


class Stages:
    """Stage 1 and stage 2 of the node (see the module docstring); ``start``/``stop`` with activation."""

    def __init__(self, settings: Callable[[], params.Settings | None], backend: Backend, outputs: Outputs, problems: ProblemLog) -> None:
        self.arrivals = threading.Condition()  # shared by every camera's slot (CameraChannel(spec, arrivals))
        self._settings = settings
        self._backend = backend
        self._outputs = outputs
        self._problems = problems
        self._cameras: Sequence[CameraChannel] = ()
        self._running = False
        self._handoff: LatestFrameSlot[list[Inferred]] = LatestFrameSlot()
        self._threads: list[threading.Thread] = []
        self._held: dict[str, tuple[Frame, tuple[int, int, str]]] = {}  # per camera: its newest frame, waiting for its first engine
        self._figures = StageFigures()
        self._figures_lock = threading.Lock()
        self._trims_due = 0  # frames still to publish after one above LARGE_FRAME_PIXELS, each followed by a heap trim

    # ------------------------------------------------------------------ control
    def start(self, cameras: Sequence[CameraChannel]) -> None:
        """Serve ``cameras`` (made with ``self.arrivals``) on two new threads."""
        self._cameras = list(cameras)
        for camera in self._cameras:
            camera.slot.reopen()
        self._handoff.reopen()
        with self.arrivals:
            self._running = True
        self._threads = [threading.Thread(target=self._run_inference, name="perception_inference", daemon=True),
                         threading.Thread(target=self._run_publishing, name="perception_publisher", daemon=True)]
        for thread in self._threads:
            thread.start()
        self._figures.started_at = time.monotonic()

    def stop(self) -> list[str]:
        """Stop both stages (frames in flight are dropped) and wait for them; the names of threads still running."""
        self._handoff.close()  # first: nothing inferred from now on is published
        with self.arrivals:
            self._running = False
            for camera in self._cameras:
                camera.slot.close()
            self.arrivals.notify_all()
        stuck = []
        for thread in self._threads:
            thread.join(timeout=STOP_TIMEOUT_S)
            if thread.is_alive():
                stuck.append(thread.name)
        self._threads = []
        self._held.clear()
        return stuck

    @property
    def running(self) -> bool:
        """True while both stage threads run."""
        return len(self._threads) == 2 and all(thread.is_alive() for thread in self._threads)

    def wake(self) -> None:
        """Cut the inference stage's current wait short (a setting it depends on changed, an engine was built)."""
        with self.arrivals:
            self.arrivals.notify_all()

    def figures(self, new_period: bool = False) -> StageFigures:
        """A copy of the stage figures; ``new_period``: the graph time starts again from 0 (a diagnostics tick)."""
        with self._figures_lock:
            current = self._figures
            copy = StageFigures(current.batch_sizes.copy(), current.graph_busy_s, current.padding_frames, current.started_at)
            if new_period:
                current.graph_busy_s = 0.0
        return copy

    # ------------------------------------------------------------------ stage 1: gather + decode + deploy graph
    def _wait_for_rate(self, last_start: float) -> bool:
        """Hold frames back to processing.max_rate_hz (re-read while waiting); True once the stages stop."""
        while self._running:
            settings = self._settings()
            rate = settings.max_rate_hz if settings is not None else 0.0
            remaining = last_start + 1.0 / rate - time.monotonic() if rate > 0 else 0.0
            if remaining <= 0:
                return False
            with self.arrivals:
                if self._running:
                    self.arrivals.wait(min(remaining, RATE_WAIT_SLICE_S))
        return True

    def _gather(self) -> list[tuple[CameraChannel, Frame]]:
        """The newest frame of every camera that has one, after waiting up to processing.batch_wait_ms for the
        other live cameras (those that sent a frame in the last second); never waits on a silent camera."""
        settings, cameras = self._settings(), self._cameras
        with self.arrivals:
            if not self.arrivals.wait_for(lambda: not self._running or any(c.slot.has_frame for c in cameras) or self._held_ready(), IDLE_WAIT_S) \
                    or not self._running:
                return []
            if len(cameras) > 1 and settings is not None and settings.batch_wait_ms > 0:
                now = time.monotonic()
                live = [c for c in cameras if (c.input_rate.last() or -1e9) > now - LIVE_CAMERA_S]
                self.arrivals.wait_for(lambda: not self._running or all(c.slot.has_frame for c in live), settings.batch_wait_ms / 1e3)
        frames = []
        for camera in cameras:
            frame = camera.slot.take(timeout=0)
            if frame is not None:
                self._held.pop(camera.spec.name, None)  # a newer frame wins over one waiting for its engine
            else:
                frame = self._take_held(camera)
            if frame is not None:
                frames.append((camera, frame))
        return frames

    def _run_inference(self) -> None:
        last_start = -1e9
        while self._running:
            if self._wait_for_rate(last_start):
                return
            frames = self._gather()
            if not frames:
                continue
            last_start = time.monotonic()
            try:
                inferred = self._infer_frames(frames)
                if inferred:
                    for item in self._handoff.put(inferred) or ():
                        item.camera.dropped_before_publishing += 1
            except Exception as exc:  # last line of defence: the stage never dies
                for camera, _ in frames:
                    camera.counters.add("failed")
                self._problems.report(None, "internal_error", f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _infer_frames(self, frames: list[tuple[CameraChannel, Frame]]) -> list[Inferred]:
        """decode (a view of each camera's bytes) -> one deploy graph call per camera layout, for the outputs someone wants."""
        settings, pipeline = self._settings(), self._backend.pipeline
        if settings is None or pipeline is None:
            return []
        ready: dict[tuple[Any, ...], list[Inferred]] = {}
        for camera, frame in frames:
            info, matched = camera.infos.match(frame.msg.header.stamp, settings.camera_info_tolerance_s)
            if info is not None and not matched:
                camera.counters.add("camera_info_unmatched")
            wanted = wanted_outputs(settings.outputs, self._outputs.subscribers(camera), list(pipeline.metadata.tasks), info is not None)
            if not wanted:
                camera.counters.add("skipped_no_subscribers")
                continue
            times = {"start": time.perf_counter()}
            pixels = self._decode(camera, frame, settings, pipeline, graph_outputs(wanted))
            if pixels is None:
                continue
            times["decode"] = time.perf_counter()
            if camera.layout != (pixels[0].shape, pixels[1]):  # a camera's first frame, or a new size or encoding
                camera.layout = (pixels[0].shape, pixels[1])
                self._backend.plan_layout(*pixels[0].shape[:2], pixels[1])
            ready.setdefault(camera.layout, []).append(Inferred(camera, frame, None, wanted, times, pixels, info))
        done: list[Inferred] = []
        for layout, group in ready.items():
            capacity = min(settings.max_batch, sum(1 for camera in self._cameras if camera.layout == layout))
            for start in range(0, len(group), settings.max_batch):
                done += self._run_graph(group[start : start + settings.max_batch], capacity)
        return done

    def _decode(self, camera: CameraChannel, frame: Frame, settings: params.Settings, pipeline: FramePipeline,
                outputs: set[str]) -> tuple[np.ndarray, str] | None:
        """(pixels as the graph takes them, encoding) of the frame, or None after reporting why it cannot be read or why
        computing ``outputs`` (deploy graph outputs) for it would exceed processing.memory_budget_mb."""
        try:
            if frame.compressed:
                pixels, encoding = compressed_msg_to_array(frame.msg, settings.max_pixels)
            else:
                pixels, encoding = image_msg_to_array(frame.msg, settings.max_pixels, copy=False), frame.msg.encoding
            meta = pipeline.metadata
            model_pixels = meta.input_height * meta.input_width if settings.resolution == "model" else None
            check_frame(*pixels.shape[:2], outputs, settings.memory_budget_mb, model_pixels, settings.points_stride)
            return graph_input(pixels, encoding)
        except (ImageDecodeError, ValueError) as exc:
            self._reject_frame(camera, exc)
            return None

    def _reject_frame(self, camera: CameraChannel, exc: Exception) -> None:
        camera.counters.add("failed")
        self._problems.report(camera, "bad_input", f"frame on '{self._outputs.input_topic(camera)}' rejected: {exc}")

    def _run_graph(self, batch: list[Inferred], capacity: int) -> list[Inferred]:
        """One deploy graph call for frames of one camera layout (``capacity``: how many cameras have that layout,
        at most processing.max_batch; see ``graph_batch_sizes``); the frames with their buffers (none after a failure)."""
        names = graph_outputs(set().union(*(item.wanted for item in batch)))
        for _attempt in range(2):
            pipeline = self._backend.pipeline
            if pipeline is None:
                return []
            started = time.perf_counter()
            try:
                results = self._run_batch(pipeline, batch, names, capacity)
                self._backend.error = None
            except GraphPending:  # the layout's first engine is building off this thread: its frames wait for it
                for item in batch:
                    self._hold(item, pipeline)
                return []
            except ModelFileError as exc:  # a model or deploy graph file the backend cannot load: the backend's fault, never the frames'
                if self._backend_failed(batch, exc):
                    continue
                return []
            except (ValueError, ImageDecodeError) as exc:  # the frames themselves: not the backend's fault
                for item in batch:
                    self._reject_frame(item.camera, exc)
                return []
            except Exception as exc:
                if self._backend_failed(batch, exc):
                    continue
                return []
            finished = time.perf_counter()
            with self._figures_lock:
                self._figures.graph_busy_s += finished - started
                self._figures.batch_sizes[len(batch)] += 1
                self._figures.padding_frames += graph_batch_size(len(batch), capacity) - len(batch)
            for item, result in zip(batch, results):
                item.result = result
                item.times["graph"] = finished
                if result.geometry is None:
                    item.wanted -= {"points", "depth_camera_info"}
            return batch
        return []

    def _run_batch(self, pipeline: FramePipeline, batch: list[Inferred], names: set[str], capacity: int) -> list[FrameOutputs]:
        """pipeline.run_batch, with the camera info of a camera whose info describes another size left out (and reported)."""
        frames = []
        for item in batch:
            assert item.pixels is not None
            info = item.info
            if info is not None:
                try:
                    pipeline.check_camera_info(info, *item.pixels[0].shape[:2])
                except CameraInfoMismatch as exc:
                    self._problems.report(item.camera, "camera_info_mismatch", str(exc))
                    info = None
            frames.append((item.pixels[0], item.pixels[1], info))
        return pipeline.run_batch(frames, names, capacity)

    def _backend_failed(self, batch: list[Inferred], exc: Exception) -> bool:
        """The backend failed on ``batch``: True when the fallback took over (run it again there), else counted and reported."""
        if self._backend.fall_back(exc):
            return True
        self._backend.error = f"{type(exc).__name__}: {exc}"
        for item in batch:
            item.camera.counters.add("failed")
        self._problems.report(None, "inference_error", f"inference failed on {self._backend.kind}: {exc}")
        return False

    # ------------------------------------------------------------------ frames waiting for their layout's first engine
    def _hold(self, item: Inferred, pipeline: FramePipeline) -> None:
        """Keep a camera's newest frame while its layout's first engine builds (a newer frame replaces it)."""
        assert item.pixels is not None
        layout = (*item.pixels[0].shape[:2], item.pixels[1])
        name = item.camera.spec.name
        previous = self._held.get(name)
        if previous is None or previous[0] is not item.frame:
            item.camera.counters.add("waiting_for_engine")
        if pipeline.pending(*layout):
            self._held[name] = (item.frame, layout)  # type: ignore[assignment]
        else:
            self._held.pop(name, None)  # nothing builds for it any more: the next frame tries again

    def _held_ready(self) -> bool:
        pipeline = self._backend.pipeline
        return any(pipeline is None or not pipeline.pending(*layout) for _, layout in list(self._held.values()))

    def _take_held(self, camera: CameraChannel) -> Frame | None:
        held = self._held.get(camera.spec.name)
        pipeline = self._backend.pipeline
        if held is None or (pipeline is not None and pipeline.pending(*held[1])):
            return None
        self._held.pop(camera.spec.name, None)
        return held[0]

    # ------------------------------------------------------------------ stage 2: messages + publish
    def _run_publishing(self) -> None:
        while not self._handoff.closed:
            batch = self._handoff.take(timeout=IDLE_WAIT_S)
            for inferred in batch or ():
                try:
                    self._publish(inferred)
                except Exception as exc:  # last line of defence: the stage never dies
                    inferred.camera.counters.add("failed")
                    self._problems.report(inferred.camera, "internal_error",
                                          f"unexpected {type(exc).__name__}: {exc}; please report with this trace: {traceback.format_exc(limit=3)}")

    def _publish(self, inferred: Inferred) -> None:
        settings = self._settings()
        if settings is None or inferred.result is None:
            return
        times = inferred.times
        times["handoff"] = time.perf_counter()
        messages = self._outputs.messages(inferred)
        times["messages"] = time.perf_counter()
        self._outputs.publish(inferred.camera, messages)
        times["publish"] = time.perf_counter()
        record(inferred.camera, times, inferred.frame)
        if self._trims_due > 0:  # after an unusually large frame: both stages, then the output histories let go of its buffers
            self._trims_due -= 1
            release_freed_memory()  # give the heap pages they took back to the system
        if inferred.pixels is not None and inferred.pixels[0].shape[0] * inferred.pixels[0].shape[1] > LARGE_FRAME_PIXELS:
            self._trims_due = settings.output_qos_depth + 1  # its messages leave the keep-last output histories by then


def record(camera: CameraChannel, times: dict[str, float], frame: Frame) -> None:
    """Stage latencies and counters of one published frame (the hand-off wait is not a stage)."""
    camera.latency.add("decode", times["decode"] - times["start"])
    camera.latency.add("graph", times["graph"] - times["decode"])
    camera.latency.add("messages", times["messages"] - times["handoff"])
    camera.latency.add("publish", times["publish"] - times["messages"])
    camera.latency.add("total", time.monotonic() - frame.received)
    camera.counters.add("processed")
    camera.output_rate.tick()
