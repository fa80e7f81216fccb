"""Several cameras, one node: per-camera outputs and headers equal to a single-camera node's, batching,
silent cameras, camera info matched by stamp, and bad input that stays its camera's problem.

A real ROS graph in this process; waits are on messages and counters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_fixtures import RosGraph, pinhole_info, ros_graph, wait_until  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from mtl_perception.ros.camera_channel import CameraConfigError, CameraInfoBuffer, camera_specs  # noqa: E402
from mtl_perception.inference.image_codec import array_to_image_msg, image_msg_to_array  # noqa: E402
from mtl_perception.ros.node import PerceptionNode  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
FOUR = ["front", "rear", "left", "right"]


graph = ros_graph(offset=37)


def start(graph: RosGraph, name: str, overrides: dict, namespace: str) -> PerceptionNode:
    return graph.start_perception(name, namespace, {"qos.reliability": "reliable", "qos.depth": 5, "points.stride": 2, **overrides})


def frame(seed: int, stamp: int, frame_id: str, height: int = 96, width: int = 128) -> Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = array_to_image_msg(pixels, "rgb8")
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = stamp, 0, frame_id
    return msg


def camera_info(stamp: int, frame_id: str, fx: float = 110.0, height: int = 96, width: int = 128) -> CameraInfo:
    return pinhole_info(width, height, fx, frame_id, stamp)


class Cameras:
    """Image and camera-info publishers per camera, and collectors of each camera's depth, semantic and camera info."""

    def __init__(self, graph: RosGraph, namespace: str, names: list[str]) -> None:
        helper = graph.helper
        self.graph = graph
        self.images = {n: helper.create_publisher(Image, f"{namespace}/{n}/image", RELIABLE) for n in names}
        self.infos = {n: helper.create_publisher(CameraInfo, f"{namespace}/{n}/camera_info", RELIABLE) for n in names}
        self.depth = {n: graph.collect(Image, f"{namespace}/{n}/depth", RELIABLE) for n in names}
        self.semantic = {n: graph.collect(Image, f"{namespace}/{n}/semantic", RELIABLE) for n in names}
        self.camera_info = {n: graph.collect(CameraInfo, f"{namespace}/{n}/depth/camera_info", RELIABLE) for n in names}

    def connected(self, node: PerceptionNode) -> bool:
        return all(p.get_subscription_count() == 1 for p in [*self.images.values(), *self.infos.values()]) and all(
            c.publishers["depth"].get_subscription_count() >= 1 and c.publishers["semantic"].get_subscription_count() >= 1 for c in node.cameras)

    def close(self) -> None:
        for publisher in [*self.images.values(), *self.infos.values()]:
            self.graph.helper.destroy_publisher(publisher)
        for collector in [*self.depth.values(), *self.semantic.values(), *self.camera_info.values()]:
            self.graph.helper.destroy_subscription(collector.subscription)


def received(collector, stamp: int, timeout: float = 30.0):
    assert collector.wait_for(lambda msgs: any(m.header.stamp.sec == stamp for m in msgs), timeout), f"no output with stamp {stamp}"
    return next(m for m in collector.messages if m.header.stamp.sec == stamp)


@pytest.mark.parametrize("names", [FOUR[:2], FOUR], ids=["2 cameras", "4 cameras"])
def test_each_camera_gets_its_own_outputs_equal_to_a_single_camera_node(graph: RosGraph, tiny_model: Path, names: list[str]) -> None:
    multi = start(graph, "multi", {"model.path": str(tiny_model), "cameras.names": names, "processing.batch_wait_ms": 100.0}, "/multi")
    single = start(graph, "single", {"model.path": str(tiny_model)}, "/single")
    rig = Cameras(graph, "/multi", names)
    reference_image = graph.helper.create_publisher(Image, "/single/image", RELIABLE)
    reference_depth = graph.collect(Image, "/single/depth", RELIABLE)
    reference_semantic = graph.collect(Image, "/single/semantic", RELIABLE)
    try:
        assert wait_until(lambda: rig.connected(multi) and reference_image.get_subscription_count() == 1
                          and single.cameras[0].publishers["depth"].get_subscription_count() >= 1, 15)
        for round_index in range(2):  # the first round builds the graphs
            for index, name in enumerate(names):
                rig.images[name].publish(frame(10 * round_index + index, 100 * round_index + index, f"{name}_optical"))
            for index, name in enumerate(names):
                received(rig.depth[name], 100 * round_index + index)
        for index, name in enumerate(names):
            stamp = 100 + index
            depth, semantic = received(rig.depth[name], stamp), received(rig.semantic[name], stamp)
            assert depth.header.frame_id == semantic.header.frame_id == f"{name}_optical"
            reference_image.publish(frame(10 + index, stamp, f"{name}_optical"))
            alone_depth, alone_semantic = received(reference_depth, stamp), received(reference_semantic, stamp)
            np.testing.assert_array_equal(image_msg_to_array(depth), image_msg_to_array(alone_depth))
            np.testing.assert_array_equal(image_msg_to_array(semantic), image_msg_to_array(alone_semantic))
        histogram = multi.backend_values(1.0)["batch_sizes"]
        assert any(f"{size}:" in histogram for size in range(2, len(names) + 1)), f"no frames were batched: {histogram}"
        for camera in multi.cameras:
            assert multi.diagnostics_values(camera)["frames_processed"] >= 2
    finally:
        graph.helper.destroy_publisher(reference_image)
        rig.close()
        graph.stop_perception(multi)
        graph.stop_perception(single)


@pytest.fixture(scope="module")
def pair(graph: RosGraph, tiny_model: Path):
    node = start(graph, "pair", {"model.path": str(tiny_model), "cameras.names": ["front", "rear"], "processing.batch_wait_ms": 20.0,
                                 "cameras.rear.namespace": "back"}, "/pair")
    rig = Cameras(graph, "/pair", ["front"])
    rear_image = graph.helper.create_publisher(Image, "/pair/rear/image", RELIABLE)
    rear_depth = graph.collect(Image, "/pair/back/depth", RELIABLE)
    assert wait_until(lambda: rig.images["front"].get_subscription_count() == 1 and rear_image.get_subscription_count() == 1
                      and all(c.publishers["depth"].get_subscription_count() >= 1 for c in node.cameras), 15)
    yield node, rig, rear_image, rear_depth
    graph.helper.destroy_publisher(rear_image)
    rig.close()
    graph.stop_perception(node)


def test_a_silent_camera_does_not_stall_the_others(pair) -> None:
    node, rig, _, _ = pair
    for stamp in range(200, 205):
        rig.images["front"].publish(frame(stamp, stamp, "front_optical"))
        received(rig.depth["front"], stamp)
    rear = next(c for c in node.cameras if c.spec.name == "rear")
    assert node.diagnostics_values(rear)["frames_received"] == 0


def test_bad_input_stays_its_cameras_problem(pair) -> None:
    node, rig, rear_image, rear_depth = pair
    front, rear = node.cameras
    truncated = frame(1, 300, "rear_optical")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    rear_image.publish(truncated)
    assert wait_until(lambda: node.diagnostics_values(rear)["bad_input"] == 1, 10)
    rig.images["front"].publish(frame(2, 301, "front_optical"))
    received(rig.depth["front"], 301)
    rear_image.publish(frame(3, 302, "rear_optical", height=120, width=160))  # another size: its own graph, served
    assert received(rear_depth, 302).width == 160
    assert node.diagnostics_values(front)["bad_input"] == 0 and node.diagnostics_values(front)["frames_failed"] == 0


def test_camera_info_is_matched_to_each_image_by_stamp(pair) -> None:
    node, rig, _, _ = pair
    for stamp, fx in ((400, 100.0), (401, 150.0), (402, 200.0)):
        rig.infos["front"].publish(camera_info(stamp, "front_optical", fx))
    front = node.cameras[0]
    assert wait_until(lambda: front.infos.latest() is not None and front.infos.latest().header.stamp.sec == 402, 10)
    for stamp, fx in ((401, 150.0), (400, 100.0)):  # not the newest: the one with the image's stamp
        rig.images["front"].publish(frame(stamp, stamp, "front_optical"))
        info = received(rig.camera_info["front"], stamp)
        assert info.k[0] == pytest.approx(fx) and info.header.stamp.sec == stamp
    unmatched = node.diagnostics_values(front)["camera_info_unmatched"]
    rig.images["front"].publish(frame(9, 499, "front_optical"))  # no camera info near this stamp: the newest, counted
    assert received(rig.camera_info["front"], 499).k[0] == pytest.approx(200.0)
    assert node.diagnostics_values(front)["camera_info_unmatched"] == unmatched + 1


def test_camera_info_buffer_matches_nearest_within_the_tolerance() -> None:
    buffer = CameraInfoBuffer(size=3)
    assert buffer.match(camera_info(1, "c").header.stamp, 0.01) == (None, False)
    for stamp in (1, 2, 3, 4):
        buffer.add(camera_info(stamp, "c", fx=float(stamp)))
    nearest, matched = buffer.match(camera_info(3, "c").header.stamp, 0.01)
    assert matched and nearest.k[0] == 3.0
    newest, matched = buffer.match(camera_info(1, "c").header.stamp, 0.01)  # dropped from the 3-message history
    assert not matched and newest.k[0] == 4.0


@pytest.mark.parametrize("names, values, fragment", [
    (["front", "front"], {}, "twice"),
    (["9lives"], {}, "not a valid name"),
    (["a", "b"], {"b": {"namespace": "a"}}, "same namespace"),
    (["a"], {"a": {"image_topic": " "}}, "cameras.a.image_topic must name a topic"),
])
def test_bad_camera_sets_are_one_line_errors(names: list[str], values: dict, fragment: str) -> None:
    with pytest.raises(CameraConfigError, match=fragment):
        camera_specs(names, values)


def test_the_two_camera_parameter_file_configures_two_cameras(graph: RosGraph, tiny_model: Path) -> None:
    """config/two_cameras.yaml as the node reads a --params-file: both cameras, their topics and namespaces."""
    import yaml

    document = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "two_cameras.yaml").read_text())
    flat: dict = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", document["/**"]["ros__parameters"])
    node = start(graph, "from_yaml", {"model.path": str(tiny_model), **flat}, "/yaml")
    try:
        specs = [camera.spec for camera in node.cameras]
        assert [(s.name, s.image_topic, s.camera_info_topic, s.namespace) for s in specs] == [
            ("front", "/front/color/image_raw", "/front/color/camera_info", "front"),
            ("rear", "/rear/color/image_raw", "/rear/color/camera_info", "rear")]
        assert graph.helper.count_publishers("/yaml/front/depth") == 1 and graph.helper.count_publishers("/yaml/rear/semantic/classes") == 1
    finally:
        graph.stop_perception(node)
