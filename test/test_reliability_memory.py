"""The memory budget (``processing.memory_budget_mb``) and memory after an unusually large frame.

- the estimate (``inference/memory_budget.py``): the largest admitted frame follows from the budget per output
  set; a frame above it is refused with a reason naming its size, the budget and the way to fit;
- the onnxruntime backend: a deploy graph of a large frame runs without the shared arena, one of a normal frame
  with it;
- a real node process: a 4096x4096 frame above the budget is refused per frame (counted, the reason logged) and the
  node serves the next frame; after the largest frame the budget admits and then normal frames, the node's RSS
  (/proc/PID/status VmRSS) is within 20 % of a node that only saw normal frames.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from mtl_perception.inference import memory_budget as mb
from mtl_perception.ros import parameters as params

ROOT = Path(__file__).resolve().parents[1]
ALL_GRAPH_OUTPUTS = ("depth", "depth_color", "labels", "semantic_color", "semantic_overlay", "normals", "points")


# ------------------------------------------------------------------ the estimate
def test_largest_frame_follows_the_budget_per_output_set() -> None:
    every = mb.largest_frame(1536, ALL_GRAPH_OUTPUTS)
    depth = mb.largest_frame(1536, ["depth"])
    assert 3840 * 2160 <= every < 4096 * 4096, "the default budget admits 4K UHD with every output, not 4096x4096"
    assert depth >= 4096 * 4096 > every, "fewer outputs admit larger frames"
    assert mb.largest_frame(3072, ALL_GRAPH_OUTPUTS) == pytest.approx(2 * every, rel=1e-6)
    assert mb.largest_frame(1536, ALL_GRAPH_OUTPUTS, model_pixels=240 * 320) > 10 * every, "outputs at model resolution"
    assert mb.largest_frame(0, ALL_GRAPH_OUTPUTS) >= 1 << 62, "0 = no budget"
    # a task group costs its dearest member: colour and overlay add to the labels less than their own cost
    assert mb.bytes_per_output_pixel(["labels", "semantic_color", "semantic_overlay"]) < sum(
        mb.bytes_per_output_pixel([name]) for name in ("labels", "semantic_color", "semantic_overlay"))
    with pytest.raises(ValueError, match="unknown deploy graph output"):
        mb.bytes_per_output_pixel(["depth", "nope"])


def test_check_frame_admits_the_largest_frame_and_refuses_one_row_more() -> None:
    outputs = ["depth", "labels"]
    width = 2000
    height = mb.largest_frame(256, outputs) // width
    mb.check_frame(height, width, outputs, 256)
    with pytest.raises(mb.FrameOverBudget) as refused:
        mb.check_frame(height + 50, width, outputs, 256)
    reason = str(refused.value)
    assert f"{width}x{height + 50}" in reason and "processing.memory_budget_mb = 256" in reason
    assert "output.resolution" in reason and "\n" not in reason
    mb.check_frame(4096, 4096, outputs, 0)  # no budget
    mb.check_frame(4096, 4096, [], 256)  # nothing computed
    mb.check_frame(4096, 4096, outputs, 256, model_pixels=240 * 320)  # outputs at the network's size fit


def test_parameter_and_configure_note() -> None:
    settings = params.settings_from_values({})
    assert settings.memory_budget_mb == params.SPEC_BY_NAME["processing.memory_budget_mb"].default == 1536
    assert params.SPEC_BY_NAME["processing.memory_budget_mb"].runtime
    note = params.memory_budget_note(settings)
    assert "1536 MB admits frames up to" in note and "input.max_pixels = 16777216" in note
    few = params.settings_from_values({f"output.{key}": key == "depth" for key in params.OUTPUT_TOPICS})
    assert "admits every frame input.max_pixels" in params.memory_budget_note(few)
    assert "no memory budget" in params.memory_budget_note(params.settings_from_values({"processing.memory_budget_mb": 0}))
    with pytest.raises(params.ParameterError):
        params.settings_from_values({"processing.memory_budget_mb": -1})


def test_release_freed_memory_runs_here() -> None:
    assert mb.release_freed_memory() in (True, False)


# ------------------------------------------------------------------ the backend's arena policy
def test_large_frame_graphs_run_without_the_shared_arena(tiny_model: Path, tmp_path: Path) -> None:
    from mtl_perception.inference.frame_pipeline import FramePipeline

    pipeline = FramePipeline(tiny_model, "onnxruntime", {"provider": "cpu"}, cache_dir=tmp_path)
    try:
        small = pipeline.run(np.zeros((48, 64, 3), np.uint8), "rgb8", ["depth"])
        large = pipeline.run(np.zeros((1080, 1920, 3), np.uint8), "rgb8", ["depth"])
        assert small.arrays["depth"].shape == (48, 64) and large.arrays["depth"].shape == (1080, 1920)
        arenas = {}
        for options, (runner, _) in pipeline._graphs.items():
            session_options = runner.backend.session.get_session_options()
            arenas[(options.height, options.width)] = session_options.enable_cpu_mem_arena
        assert arenas == {(48, 64): True, (1080, 1920): False}, "a large frame's graph has no arena to keep its memory in"
    finally:
        pipeline.close()


# ------------------------------------------------------------------ a real node process
NORMAL = (240, 320)  # height, width of the normal frames
LARGE_ADMITTED = (1080, 1920)  # a common size TEST_BUDGET_MB admits for depth + semantic, above LARGE_FRAME_PIXELS
REFUSED = (4096, 4096)
TEST_BUDGET_MB = 160
NORMAL_AFTER = 20
FRAME_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def graph() -> Iterator[Any]:
    """This module's ROS graph; its participant carries the shipped Fast DDS profile (a 4096x4096 frame is 50 MB)."""
    pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
    from ros_fixtures import RosGraph

    from mtl_perception.paths import fastdds_profile_env
    from mtl_perception.ros.domain import isolate_ros_domain

    profile = fastdds_profile_env(ROOT / "config" / "fastdds_large_images.xml")
    saved = {name: os.environ.get(name) for name in profile}
    os.environ.update(profile)
    try:
        ros = RosGraph(isolate_ros_domain(offset=97))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield ros
    ros.close()


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


class NodeUnderTest:
    """A perception_node process (depth and semantic enabled) with this test's camera publisher and subscribers."""

    def __init__(self, graph: Any, model: Path, namespace: str, cache: Path) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from mtl_perception.paths import fastdds_profile_env

        enabled = {"depth", "semantic"}
        flags = [item for key in params.OUTPUT_TOPICS for item in ("-p", f"output.{key}:={'true' if key in enabled else 'false'}")]
        env = {**os.environ, **fastdds_profile_env(ROOT / "config" / "fastdds_large_images.xml")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", f"__ns:={namespace}", "-p", f"model.path:={model}",
             "-p", "model.provider:=cpu", "-p", "qos.reliability:=reliable", "-p", f"processing.memory_budget_mb:={TEST_BUDGET_MB}",
             "-p", f"model.engine_cache_dir:={cache}", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.graph, self.namespace = graph, namespace
        self.cond = threading.Condition()
        self.served: dict[int, set[str]] = {}
        self.bad_input = 0
        helper = graph.helper
        self.subscriptions = [helper.create_subscription(Image, f"{namespace}/{topic}", lambda m, t=topic: self._on_output(t, m), reliable)
                              for topic in ("depth", "semantic")]
        self.subscriptions.append(helper.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10))
        self.images = helper.create_publisher(Image, f"{namespace}/image", reliable)
        self.stamp = 0

    def _on_output(self, topic: str, msg: Any) -> None:
        with self.cond:
            self.served.setdefault(msg.header.stamp.sec, set()).add(topic)
            self.cond.notify_all()

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.hardware_id.startswith(self.namespace):
                values = {pair.key: pair.value for pair in status.values}
                with self.cond:
                    self.bad_input = max(self.bad_input, int(values.get("bad_input", 0)))
                    self.cond.notify_all()

    def ready(self) -> bool:
        from ros_fixtures import wait_until

        return wait_until(lambda: self.process.poll() is not None or (
            self.images.get_subscription_count() > 0 and all(self.graph.helper.count_publishers(f"{self.namespace}/{t}") > 0 for t in ("depth", "semantic"))),
            120) and self.process.poll() is None

    def send(self, height: int, width: int) -> str:
        """Publish one rgb8 frame; 'served' once both outputs arrived, 'refused' once the node counted it as bad input."""
        from mtl_perception.inference.image_codec import array_to_image_msg
        from mtl_perception.inference.sample_images import sample_image

        self.stamp += 1
        msg = array_to_image_msg(sample_image(height, width, seed=self.stamp % 3), "rgb8")
        msg.header.stamp.sec, msg.header.frame_id = self.stamp, "camera_optical"
        with self.cond:
            refused_before = self.bad_input
        self.images.publish(msg)
        stamp = self.stamp
        with self.cond:
            done = self.cond.wait_for(lambda: {"depth", "semantic"} <= self.served.get(stamp, set()) or self.bad_input > refused_before,
                                      FRAME_TIMEOUT_S)
            if not done:
                return "timeout"
            return "served" if {"depth", "semantic"} <= self.served.get(stamp, set()) else "refused"

    def stop(self) -> tuple[int, str]:
        for subscription in self.subscriptions:
            self.graph.helper.destroy_subscription(subscription)
        self.graph.helper.destroy_publisher(self.images)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            return -999, output
        return self.process.returncode, output


def test_node_refuses_a_frame_above_the_budget_and_its_memory_returns_after_a_large_one(graph: Any, tiny_model: Path, tmp_path: Path) -> None:
    outputs = ["depth", "labels"]
    assert mb.frame_bytes(REFUSED[0] * REFUSED[1], REFUSED[0] * REFUSED[1], outputs) > TEST_BUDGET_MB << 20
    assert mb.largest_frame(TEST_BUDGET_MB, outputs) >= LARGE_ADMITTED[0] * LARGE_ADMITTED[1] > mb.LARGE_FRAME_PIXELS
    control = NodeUnderTest(graph, tiny_model, "/mem_control", tmp_path / "cache_control")
    node = NodeUnderTest(graph, tiny_model, "/mem_large", tmp_path / "cache_large")
    results: dict[str, Any] = {}
    try:
        assert control.ready() and node.ready(), "a node did not come up"
        for subject in (control, node):
            assert [subject.send(*NORMAL) for _ in range(3)][-1] == "served"
        results["refused"] = node.send(*REFUSED)
        results["next"] = node.send(*NORMAL)
        results["large"] = node.send(*LARGE_ADMITTED)
        results["after"] = [node.send(*NORMAL) for _ in range(NORMAL_AFTER)]
        results["control"] = [control.send(*NORMAL) for _ in range(NORMAL_AFTER)]
        held, reference = vm_rss_mb(node.process.pid), vm_rss_mb(control.process.pid)
    finally:
        (code, output), (control_code, _) = node.stop(), control.stop()
    assert results["refused"] == "refused" and results["next"] == "served", results
    assert results["large"] == "served", f"the largest frame the budget admits is served: {results['large']}"
    assert results["after"].count("served") == NORMAL_AFTER and results["control"].count("served") == NORMAL_AFTER
    print(f"RSS after a {LARGE_ADMITTED[1]}x{LARGE_ADMITTED[0]} frame and {NORMAL_AFTER} normal ones: {held:.0f} MB; "
          f"a node that saw only normal frames: {reference:.0f} MB")
    assert held <= 1.2 * reference, f"{held:.0f} MB held against {reference:.0f} MB"
    assert code == 0 and control_code == 0, output[-3000:]
    assert f"frame of {REFUSED[1]}x{REFUSED[0]} would need about" in output and f"processing.memory_budget_mb = {TEST_BUDGET_MB}" in output
    assert f"memory budget {TEST_BUDGET_MB} MB admits frames up to" in output, "configure says what the budget admits"
