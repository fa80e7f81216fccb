"""Three processes: a camera publisher, perception_node, and this test as the subscriber."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_fixtures import RosGraph, ros_graph, wait_until

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_node_process import start_process, stop_process  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from mtl_perception.paths import fastdds_profile_env  # noqa: E402

HERE = Path(__file__).resolve().parent
# the deployment set-up docs/node.md recommends for multi-MB images (large shared-memory segments)
PROFILE = HERE.parent / "config" / "fastdds_large_images.xml"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
FRAMES = 40

graph = ros_graph(offset=23)


def child_env() -> dict[str, str]:
    """This process's environment (ROS domain, the ROS wheels' library path) plus the Fast DDS profile."""
    return {**os.environ, **fastdds_profile_env(PROFILE)}


def start_node(model: Path, namespace: str, *extra: str) -> subprocess.Popen:
    """perception_node in its own process, with the Fast DDS profile."""
    return start_process(["-r", f"__ns:={namespace}", "-p", f"model.path:={model}", *extra], env=child_env())


def latest_value(diagnostics: list[DiagnosticArray], key: str) -> str | None:
    for array in reversed(diagnostics):
        for status in array.status:
            for pair in status.values:
                if pair.key == key:
                    return pair.value
    return None


def test_reliable_outputs_arrive_with_their_input_headers(graph: RosGraph, tiny_model: Path) -> None:
    node = start_node(tiny_model, "/mp", "-p", "qos.reliability:=reliable", "-p", "qos.depth:=5")
    depth = graph.collect(Image, "/mp/depth", RELIABLE)
    semantic = graph.collect(Image, "/mp/semantic", RELIABLE)
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    camera = None
    try:
        assert wait_until(lambda: graph.helper.count_subscribers("/mp/image") >= 1, 60), "the node did not subscribe to /mp/image"
        camera = subprocess.run(
            [sys.executable, str(HERE / "ros_camera_publisher.py"), "--topic", "/mp/image", "--count", str(FRAMES), "--rate", "10", "--width", "640", "--height", "480"],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )
        assert camera.returncode == 0, camera.stdout + camera.stderr
        assert diagnostics.wait_for(lambda msgs: latest_value(msgs, "frames_received") == str(FRAMES), 10)
        time.sleep(1.5)  # one more diagnostics period, after the last frame was processed
        processed = int(latest_value(diagnostics.messages, "frames_processed"))
        received = int(latest_value(diagnostics.messages, "frames_received"))
        dropped = int(latest_value(diagnostics.messages, "frames_dropped"))
        failed = int(latest_value(diagnostics.messages, "frames_failed"))
        print(f"received {received}, processed {processed}, dropped {dropped}, depth outputs {len(depth.messages)}, semantic outputs {len(semantic.messages)}")
        assert received == FRAMES and failed == 0
        assert processed + dropped == FRAMES and processed >= 1
        for collector in (depth, semantic):
            assert len(collector.messages) >= 0.95 * processed, f"{len(collector.messages)} of {processed} processed frames arrived"
            for msg in collector.messages:
                index = msg.header.stamp.sec - 2000
                assert 0 <= index < FRAMES and msg.header.stamp.nanosec == index * 1000 and msg.header.frame_id == f"camera_{index}"
                assert (msg.width, msg.height) == (640, 480)
    finally:
        code, output = stop_process(node)
    assert code == 0, output
    assert "shutting down" in output


def test_sigterm_and_autostart_false(graph: RosGraph, tiny_model: Path) -> None:
    node = start_node(tiny_model, "/waiting", "-p", "autostart:=false")
    try:
        assert wait_until(lambda: "/waiting/perception_node" in {f"{ns.rstrip('/')}/{name}" for name, ns in graph.helper.get_node_names_and_namespaces()}, 60)
        time.sleep(0.5)
        assert graph.helper.count_publishers("/waiting/depth") == 0 and graph.helper.count_subscribers("/waiting/image") == 0
    finally:
        code, output = stop_process(node, sig=signal.SIGTERM)
    assert code == 0, output
    assert "waiting for a lifecycle manager" in output
