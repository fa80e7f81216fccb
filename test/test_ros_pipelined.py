"""The pipelined node: order and headers under a burst, drops counted per stage, camera size changes,
clean stops with frames in flight, and a rate limit that cannot stall the inference stage.

A real ROS graph in this process (rclpy from the ros-* wheels); waits are on messages and counters.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_fixtures import RosGraph, ros_graph, wait_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from mtl_perception.inference.image_codec import array_to_image_msg  # noqa: E402
from mtl_perception.ros.node import PerceptionNode  # noqa: E402

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


graph = ros_graph(offset=23)


@pytest.fixture(scope="module")
def node(graph: RosGraph, tiny_model: Path) -> Iterator[PerceptionNode]:
    # a reader history deep enough for a whole burst: every frame reaches the node's callback (DDS drops none), so
    # every drop is the node's own (latest frame wins) and is counted
    perception = graph.start_perception("pipelined", "/pipe", {"model.path": str(tiny_model), "qos.reliability": "reliable", "qos.depth": 100})
    yield perception
    graph.stop_perception(perception)


def frame(index: int, height: int = 96, width: int = 128) -> Image:
    pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = array_to_image_msg(pixels, "rgb8")
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 5000 + index, 17 * index, f"cam_{index % 3}"
    return msg


@pytest.fixture(scope="module")
def rig(graph: RosGraph, node: PerceptionNode):
    publisher = graph.helper.create_publisher(Image, "/pipe/image", RELIABLE)
    depth = graph.collect(Image, "/pipe/depth", RELIABLE)
    semantic = graph.collect(Image, "/pipe/semantic", RELIABLE)
    assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["semantic"].get_subscription_count() == 1
                      and node.cameras[0].publishers["depth"].get_subscription_count() == 1, 15)
    publisher.publish(frame(0))  # the first frame builds the deploy graph
    assert depth.wait_for(lambda msgs: len(msgs) == 1, 30)
    yield publisher, depth, semantic
    graph.helper.destroy_publisher(publisher)


def test_burst_keeps_order_and_headers_and_counts_every_drop(node: PerceptionNode, rig) -> None:
    publisher, depth, semantic = rig
    before = node.diagnostics_values()
    sent = {}
    for i in range(1, 61):  # a 60 Hz camera: faster than the tiny model's graph on this CPU, drops expected
        msg = frame(i)
        sent[msg.header.stamp.sec] = (msg.header.stamp.nanosec, msg.header.frame_id)
        publisher.publish(msg)
        time.sleep(1 / 60)  # the camera's frame period (input pacing; nothing waits on it)
    last = 5060
    # the newest frame is always served: the last frame published comes out, whatever was dropped before it
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == last for m in msgs), 30)
    assert semantic.wait_for(lambda msgs: any(m.header.stamp.sec == last for m in msgs), 30)
    assert wait_until(lambda: node.diagnostics_values()["frames_received"] - before["frames_received"] == 60, 30)

    def accounted() -> int:
        values = node.diagnostics_values()
        return values["frames_processed"] - before["frames_processed"] + values["frames_dropped"] - before["frames_dropped"]

    assert wait_until(lambda: accounted() == 60, 10), f"{accounted()} of 60 frames processed or dropped"
    after = node.diagnostics_values()
    for collector in (depth, semantic):
        stamps = [m.header.stamp.sec for m in collector.messages if m.header.stamp.sec > 5000]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "outputs out of input order or repeated"
        for m in collector.messages:
            if m.header.stamp.sec in sent:
                assert (m.header.stamp.nanosec, m.header.frame_id) == sent[m.header.stamp.sec]
    processed = after["frames_processed"] - before["frames_processed"]
    dropped = after["frames_dropped"] - before["frames_dropped"]
    assert dropped == (after["frames_dropped_before_inference"] - before["frames_dropped_before_inference"]
                       + after["frames_dropped_before_publishing"] - before["frames_dropped_before_publishing"])
    served = {m.header.stamp.sec for m in depth.messages if m.header.stamp.sec > 5000}
    assert len(served) == processed


def test_camera_size_change_builds_another_graph_and_serves(node: PerceptionNode, rig) -> None:
    publisher, depth, _ = rig
    built = node.backend.pipeline.graphs_built
    publisher.publish(frame(100, 120, 160))
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 5100 and (m.height, m.width) == (120, 160) for m in msgs), 30)
    publisher.publish(frame(101))  # back to the first size: its graph is still cached
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 5101 and (m.height, m.width) == (96, 128) for m in msgs), 30)
    assert node.backend.pipeline.graphs_built == built + 1


def test_rate_limit_of_almost_zero_then_zero_serves_again(node: PerceptionNode, rig) -> None:
    publisher, depth, _ = rig
    assert node.set_parameters([Parameter("processing.max_rate_hz", value=1e-12)])[0].successful
    publisher.publish(frame(200))
    assert node.set_parameters([Parameter("processing.max_rate_hz", value=0.0)])[0].successful
    publisher.publish(frame(201))
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 5201 for m in msgs), 30), "the inference stage stalled in the rate wait"
    assert node.stages.running


def test_deactivate_with_frames_in_flight_stops_both_stages_cleanly(node: PerceptionNode, rig) -> None:
    publisher, depth, _ = rig
    for i in range(300, 320):
        publisher.publish(frame(i))
    assert wait_until(lambda: node.diagnostics_values()["frames_received"] > 0 and node.cameras[0].slot.received > 0, 5)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert not node.stages.running and node.backend.pipeline is None
    assert node.diagnostics_values()["state"] == "inactive"
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_until(lambda: publisher.get_subscription_count() == 1, 10)
    publisher.publish(frame(400))
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 5400 for m in msgs), 30)
