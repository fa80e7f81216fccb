"""perception_node in a real in-process ROS graph: outputs, parity, lifecycle, parameters, bad input, real frames."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
from ros_fixtures import CLASS_NAMES, PALETTE, RosGraph, ros_graph, wait_until

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from mtl_perception.inference.processing import preprocess, to_rgb  # noqa: E402
from mtl_perception.inference.sample_images import sample_image  # noqa: E402
from mtl_perception.inference.image_codec import array_to_image_msg, image_msg_to_array  # noqa: E402
from mtl_perception.ros.node import PerceptionNode  # noqa: E402
from mtl_perception.ros.pointcloud import pointcloud_to_array  # noqa: E402
from numpy_oracle import backproject, postprocess  # noqa: E402
from shared_data import shared_path  # noqa: E402

REALDATA = shared_path("realdata")
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUTS = {
    "depth": (Image, "32FC1"),
    "depth/camera_info": (CameraInfo, None),
    "depth/color": (Image, "bgr8"),
    "semantic": (Image, "mono8"),
    "semantic/color": (Image, "bgr8"),
    "semantic/overlay": (Image, "bgr8"),
    "normals": (Image, "32FC3"),
    "points": (PointCloud2, None),
}
HEIGHT, WIDTH = 96, 128  # camera frames of these tests (4:3, like the model's 64x96 after letterbox)
K = np.array([[110.0, 0.0, 63.5], [0.0, 110.0, 47.5], [0.0, 0.0, 1.0]])


graph = ros_graph(offset=11)


def make_node(graph: RosGraph, name: str, overrides: dict[str, Any], namespace: str) -> PerceptionNode:
    params = [Parameter(k, value=v) for k, v in {"autostart": False, **overrides}.items()]
    return graph.add(PerceptionNode(name, namespace=namespace, parameter_overrides=params, context=graph.context))


@pytest.fixture(scope="module")
def node(graph: RosGraph, tiny_model: Path) -> Iterator[PerceptionNode]:
    perception = graph.start_perception("perception", "/cam", {"model.path": str(tiny_model), "qos.reliability": "reliable", "qos.depth": 5, "points.stride": 1})
    yield perception
    graph.stop_perception(perception)


def header(index: int, frame_id: str = "cam_optical") -> Header:
    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = 1000 + index, 1234 * index
    return msg


def camera_info(k: np.ndarray = K, width: int = WIDTH, height: int = HEIGHT) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = k.reshape(-1).tolist()
    info.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1).tolist()
    info.header.frame_id = "cam_optical"
    return info


class Rig:
    """Publishers into one node and collectors of all its outputs."""

    def __init__(self, graph: RosGraph, namespace: str, compressed: bool = False) -> None:
        self.graph = graph
        self.image_pub = graph.helper.create_publisher(CompressedImage if compressed else Image, f"{namespace}/image{'/compressed' if compressed else ''}", RELIABLE)
        self.info_pub = graph.helper.create_publisher(CameraInfo, f"{namespace}/camera_info", RELIABLE)
        self.out = {topic: graph.collect(msg_type, f"{namespace}/{topic}", RELIABLE) for topic, (msg_type, _) in OUTPUTS.items()}

    def wait_connected(self, node: PerceptionNode) -> None:
        assert wait_until(lambda: self.image_pub.get_subscription_count() >= 1 and all(p.get_subscription_count() >= 1 for p in node.cameras[0].publishers.values()), 15)

    def send(self, msg: Any) -> None:
        self.image_pub.publish(msg)

    def wait_stamp(self, stamp_sec: int, topics: list[str] | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """The message with this stamp on each topic (assert they all arrive)."""
        found = {}
        for topic in topics or list(OUTPUTS):
            ok = self.out[topic].wait_for(lambda msgs: any(m.header.stamp.sec == stamp_sec for m in msgs), timeout)
            assert ok, f"no message with stamp {stamp_sec} on {topic}"
            found[topic] = next(m for m in self.out[topic].messages if m.header.stamp.sec == stamp_sec)
        return found

    def close(self) -> None:
        for collector in self.out.values():
            self.graph.helper.destroy_subscription(collector.subscription)
        self.graph.helper.destroy_publisher(self.image_pub)
        self.graph.helper.destroy_publisher(self.info_pub)


@pytest.fixture(scope="module")
def rig(graph: RosGraph, node: PerceptionNode) -> Iterator[Rig]:
    camera = Rig(graph, "/cam")
    camera.wait_connected(node)
    camera.info_pub.publish(camera_info())
    assert wait_until(lambda: node.cameras[0].infos.latest() is not None, 10)
    yield camera
    camera.close()


def frame_msg(index: int, encoding: str = "rgb8", height: int = HEIGHT, width: int = WIDTH) -> Image:
    rgb = sample_image(height, width, seed=index)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1].copy(), "mono8": rgb[..., 1].copy()}[encoding]
    return array_to_image_msg(pixels, encoding, header(index))


def test_every_output_has_the_right_encoding_size_and_header(node: PerceptionNode, rig: Rig, graph: RosGraph) -> None:
    classes = graph.collect(String, "/cam/semantic/classes", LATCHED)
    rig.send(frame_msg(1))
    got = rig.wait_stamp(1001)
    for topic, (msg_type, encoding) in OUTPUTS.items():
        msg = got[topic]
        assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 1234, topic
        if encoding:
            assert (msg.encoding, msg.height, msg.width) == (encoding, HEIGHT, WIDTH), topic
    depth = image_msg_to_array(got["depth"])
    finite = depth[np.isfinite(depth)]
    assert finite.size and finite.min() >= 0.1 - 1e-6 and finite.max() <= 10.0 + 1e-4  # the model's range
    assert image_msg_to_array(got["semantic"]).max() < len(CLASS_NAMES)
    normals = image_msg_to_array(got["normals"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    assert (got["depth/camera_info"].width, got["depth/camera_info"].height) == (WIDTH, HEIGHT)
    assert got["points"].width * got["points"].height == np.isfinite(depth).sum()
    assert classes.wait_for(lambda msgs: len(msgs) >= 1, 10)
    table = json.loads(classes.messages[-1].data)
    assert [c["name"] for c in table["classes"]] == CLASS_NAMES and [c["color"] for c in table["classes"]] == PALETTE
    assert table["model_sha256"] == node.diagnostics_values()["model_sha256"] and len(table["model_sha256"]) == 64


def test_outputs_equal_direct_backend_inference(node: PerceptionNode, rig: Rig, tiny_model: Path) -> None:
    from mtl_perception.inference.backends import create_backend

    msg = frame_msg(2)
    rig.send(msg)
    got = rig.wait_stamp(1002, ["depth", "semantic", "normals"])
    backend = create_backend("onnxruntime", str(tiny_model), provider="cpu")
    batch, transform = preprocess(to_rgb(image_msg_to_array(msg), "rgb8"), backend.metadata, "letterbox")
    expected = postprocess(backend.infer(batch), backend.metadata, transform, "input")
    # the node clips depth to the model's range and rescales nothing (the model has no training focal length)
    np.testing.assert_allclose(image_msg_to_array(got["depth"]), expected.depth, rtol=1e-5, atol=1e-5)
    agree = (image_msg_to_array(got["semantic"]) == expected.labels).mean()
    assert agree > 0.999  # argmax ties aside, identical
    np.testing.assert_allclose(image_msg_to_array(got["normals"]), expected.normals, atol=1e-4)


def test_point_cloud_back_projects_the_published_depth(node: PerceptionNode, rig: Rig) -> None:
    rig.send(frame_msg(3))
    got = rig.wait_stamp(1003, ["depth", "depth/camera_info", "points", "semantic"])
    depth = image_msg_to_array(got["depth"])
    k = np.asarray(got["depth/camera_info"].k).reshape(3, 3)
    np.testing.assert_allclose(k, K, atol=1e-9)  # output at input resolution: intrinsics unchanged
    x, y, z = backproject(depth.astype(np.float64), k)
    valid = np.isfinite(z)
    points = pointcloud_to_array(got["points"]).reshape(-1)
    cloud = np.stack([points["x"], points["y"], points["z"]], axis=-1).astype(np.float64)
    truth = np.stack([x[valid], y[valid], z[valid]], axis=-1)
    assert cloud.shape == truth.shape and np.abs(cloud - truth).max() <= 1e-4
    labels = image_msg_to_array(got["semantic"])
    np.testing.assert_array_equal(points["label"], labels[valid])
    colours = np.array(PALETTE, np.uint32)[labels[valid]]
    np.testing.assert_array_equal(points["rgb"], colours[:, 0] << 16 | colours[:, 1] << 8 | colours[:, 2])


def test_runtime_parameter_changes(node: PerceptionNode, rig: Rig) -> None:
    result = node.set_parameters([Parameter("output.resolution", value="model")])[0]
    assert result.successful
    rig.send(frame_msg(4))
    got = rig.wait_stamp(1004, ["depth", "depth/camera_info", "semantic/overlay"])
    assert (got["depth"].height, got["depth"].width) == (64, 85)  # letterboxed content of a 96x128 frame
    info = got["depth/camera_info"]
    assert (info.width, info.height) == (85, 64) and info.k[0] == pytest.approx(110.0 * 85 / 128)
    assert (got["semantic/overlay"].height, got["semantic/overlay"].width) == (64, 85)
    assert node.set_parameters([Parameter("output.resolution", value="input")])[0].successful

    assert node.set_parameters([Parameter("output.depth", value=False)])[0].successful
    rig.send(frame_msg(5))
    rig.wait_stamp(1005, ["semantic"])
    assert not any(m.header.stamp.sec == 1005 for m in rig.out["depth"].messages)
    assert node.set_parameters([Parameter("output.depth", value=True)])[0].successful

    rejected = node.set_parameters([Parameter("model.path", value="/elsewhere.onnx")])[0]
    assert not rejected.successful and "deactivate and clean up" in rejected.reason
    rejected = node.set_parameters([Parameter("qos.depth", value=0)])[0]
    assert not rejected.successful
    rejected = node.set_parameters_atomically([Parameter("depth.min", value=8.0), Parameter("depth.max", value=2.0)])
    assert not rejected.successful and "depth.min" in rejected.reason
    rejected = node.set_parameters([Parameter("depth.min", value=12.0)])[0]  # above the model's 10 m maximum
    assert not rejected.successful and "depth range [12.0, 10.0] m is empty" in rejected.reason
    rejected = node.set_parameters([Parameter("palette.override", value="[[1, 2, 3]]")])[0]
    assert not rejected.successful and f"{len(CLASS_NAMES)} classes" in rejected.reason
    assert not node.set_parameters([Parameter("autostart", value=True)])[0].successful
    assert node.get_parameter("model.path").value != "/elsewhere.onnx"

    assert node.set_parameters_atomically([Parameter("depth.min", value=0.5), Parameter("depth.max", value=2.0)]).successful
    rig.send(frame_msg(6))
    depth = image_msg_to_array(rig.wait_stamp(1006, ["depth"])["depth"])
    finite = depth[np.isfinite(depth)]
    assert finite.size == 0 or (finite.min() >= 0.5 and finite.max() <= 2.0)
    assert node.set_parameters_atomically([Parameter("depth.min", value=0.0), Parameter("depth.max", value=0.0)]).successful


def test_max_rate_limits_processing(node: PerceptionNode, rig: Rig) -> None:
    assert node.set_parameters([Parameter("processing.max_rate_hz", value=2.0)])[0].successful
    before = node.diagnostics_values()
    started = time.monotonic()
    for i in range(20):
        rig.send(frame_msg(100 + i))
        time.sleep(0.05)  # about 20 Hz
    time.sleep(0.6)
    after = node.diagnostics_values()
    elapsed = time.monotonic() - started
    processed = after["frames_processed"] - before["frames_processed"]
    assert 1 <= processed <= 1 + elapsed * 2.0
    received = after["frames_received"] - before["frames_received"]
    assert received == 20 and after["frames_dropped"] - before["frames_dropped"] >= 20 - processed - 1
    node.set_parameters([Parameter("processing.max_rate_hz", value=0.0)])


def bad_images() -> list[tuple[str, Image]]:
    good = frame_msg(0)
    cases = []
    msg = frame_msg(0)
    msg.encoding = "nv21"  # yuv422 is converted now (inference/encodings.py)
    cases.append(("unsupported image encoding 'nv21'", msg))
    msg = frame_msg(0)
    msg.step = WIDTH * 3 - 3
    cases.append(("shorter than one row", msg))
    msg = frame_msg(0)
    msg.data = good.data[: len(good.data) // 2]
    cases.append(("truncated", msg))
    msg = frame_msg(0)
    msg.height = msg.width = 0
    cases.append(("zero-size", msg))
    msg = array_to_image_msg(np.zeros((4, 4), np.float32), "32FC1", header(0))
    cases.append(("unsupported image encoding '32FC1'", msg))
    return cases


@pytest.mark.parametrize("index", range(5))
def test_bad_input_is_reported_and_the_next_frame_served(node: PerceptionNode, rig: Rig, graph: RosGraph, index: int) -> None:
    expected, bad = bad_images()[index]
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    failed_before = node.diagnostics_values()["frames_failed"]
    bad.header = header(200 + index)
    rig.send(bad)
    assert wait_until(lambda: node.diagnostics_values()["frames_failed"] == failed_before + 1, 10)
    assert expected in node.cameras[0].counters.recent_problems(0.0)["bad_input"]
    # WARN, or ERROR when no good frame shared the diagnostics period with the bad one
    assert diagnostics.wait_for(lambda msgs: any(s.level in (b"\x01", b"\x02") and expected in s.message for m in msgs for s in m.status), 5)
    rig.send(frame_msg(300 + index))
    rig.wait_stamp(1300 + index, ["depth", "semantic"])
    graph.helper.destroy_subscription(diagnostics.subscription)


def test_bad_camera_info_pauses_points_only(node: PerceptionNode, rig: Rig) -> None:
    broken = camera_info()
    broken.k = [0.0] * 9
    rig.info_pub.publish(broken)
    assert wait_until(lambda: node.cameras[0].infos.latest() is None, 10)
    assert "focal length" in node.cameras[0].counters.recent_problems(0.0)["bad_camera_info"]
    rig.send(frame_msg(400))
    rig.wait_stamp(1400, ["depth", "semantic"])
    assert not any(m.header.stamp.sec == 1400 for m in rig.out["points"].messages)
    mismatched = camera_info(width=WIDTH * 2, height=HEIGHT * 2)
    rig.info_pub.publish(mismatched)
    assert wait_until(lambda: node.cameras[0].infos.latest() is not None, 10)
    rig.send(frame_msg(401))
    rig.wait_stamp(1401, ["depth"])
    assert "describes 256x192 images but the frame is 128x96" in node.cameras[0].counters.recent_problems(0.0)["camera_info_mismatch"]
    rig.info_pub.publish(camera_info())
    assert wait_until(lambda: node.cameras[0].infos.latest() is not None and node.cameras[0].infos.latest().width == WIDTH, 10)
    rig.send(frame_msg(402))
    rig.wait_stamp(1402, ["points"])


def test_outputs_nobody_subscribes_to_are_not_computed(graph: RosGraph, tiny_model: Path) -> None:
    quiet = make_node(graph, "quiet", {"model.path": str(tiny_model), "qos.reliability": "reliable"}, "/quiet")
    assert quiet.trigger_configure() == TransitionCallbackReturn.SUCCESS and quiet.trigger_activate() == TransitionCallbackReturn.SUCCESS
    publisher = graph.helper.create_publisher(Image, "/quiet/image", RELIABLE)
    assert wait_until(lambda: publisher.get_subscription_count() == 1, 10)
    publisher.publish(frame_msg(7))
    assert wait_until(lambda: quiet.diagnostics_values()["frames_skipped_no_subscribers"] == 1, 10)
    assert quiet.diagnostics_values()["frames_processed"] == 0
    semantic = graph.collect(Image, "/quiet/semantic", RELIABLE)
    assert wait_until(lambda: quiet.cameras[0].publishers["semantic"].get_subscription_count() == 1, 10)
    publisher.publish(frame_msg(8))
    assert semantic.wait_for(lambda msgs: len(msgs) == 1, 20)
    assert quiet.diagnostics_values()["frames_processed"] == 1
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(quiet)


def test_lifecycle_transitions(graph: RosGraph, tiny_model: Path) -> None:
    from ros_node_process import NodeServices

    managed = make_node(graph, "managed", {"model.path": "/no/such/model.onnx", "qos.reliability": "reliable"}, "/managed")
    helper = graph.helper
    services = NodeServices(graph, managed.get_fully_qualified_name())  # rclpy's own ~/get_state: what `ros2 lifecycle get` says
    assert services.wait_ready()
    assert managed.lifecycle_state == "unconfigured"
    assert helper.count_publishers("/managed/depth") == 0 and helper.count_subscribers("/managed/image") == 0
    assert managed.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert wait_until(lambda: helper.count_publishers("/managed/depth") == 1, 5)
    assert helper.count_subscribers("/managed/image") == 0
    # a missing model: activation fails with the reason, the node stays inactive
    assert managed.trigger_activate() == TransitionCallbackReturn.FAILURE
    assert managed.lifecycle_state == "inactive" == services.state()
    assert "model file not found: /no/such/model.onnx" in managed.backend.error
    # model.path may only change while unconfigured
    assert not managed.set_parameters([Parameter("model.path", value=str(tiny_model))])[0].successful
    assert managed.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert wait_until(lambda: helper.count_publishers("/managed/depth") == 0, 5)
    assert managed.set_parameters([Parameter("model.path", value=str(tiny_model))])[0].successful
    assert managed.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert managed.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert managed.lifecycle_state == "active" == services.state()
    assert wait_until(lambda: helper.count_subscribers("/managed/image") == 1 and helper.count_subscribers("/managed/camera_info") == 1, 5)
    assert managed.backend.pipeline is not None and managed.stages.running
    assert managed.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert wait_until(lambda: helper.count_subscribers("/managed/image") == 0, 5)
    assert managed.backend.pipeline is None and not managed.stages.running
    assert managed.trigger_activate() == TransitionCallbackReturn.SUCCESS  # re-activation reloads the model
    assert managed.backend.pipeline is not None
    assert managed.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert managed.lifecycle_state == "finalized" == services.state()
    assert managed.backend.pipeline is None and wait_until(lambda: helper.count_publishers("/managed/depth") == 0, 5)
    graph.remove(managed)
    managed.destroy_node()


def test_compressed_input_and_corrupt_data(graph: RosGraph, tiny_model: Path) -> None:
    node = make_node(graph, "compressed", {"model.path": str(tiny_model), "qos.reliability": "reliable", "input.compressed": True}, "/jpeg")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    camera = Rig(graph, "/jpeg", compressed=True)
    camera.wait_connected(node)
    rgb = sample_image(HEIGHT, WIDTH, seed=9)
    for index, ext in ((1, ".jpg"), (2, ".png")):
        ok, data = cv2.imencode(ext, rgb[..., ::-1])
        camera.send(CompressedImage(header=header(index), format=ext.strip("."), data=data.tobytes()))
        got = camera.wait_stamp(1000 + index, ["depth", "semantic/overlay"])
        assert (got["depth"].height, got["depth"].width) == (HEIGHT, WIDTH)
    camera.send(CompressedImage(header=header(3), format="jpeg", data=b"\xff\xd8 corrupt bytes"))
    assert wait_until(lambda: node.diagnostics_values()["bad_input"] == 1, 10)
    assert "JPEG" in node.cameras[0].counters.recent_problems(0.0)["bad_input"] or "neither" in node.cameras[0].counters.recent_problems(0.0)["bad_input"]
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1])
    camera.send(CompressedImage(header=header(4), format="jpeg", data=data.tobytes()))
    camera.wait_stamp(1004, ["depth"])
    if REALDATA.is_dir():  # real camera JPEGs (NYU Depth V2, 640x480), as a compressed transport would carry them
        for index, path in enumerate(sorted((REALDATA / "metric3d_demo" / "nyu_demo" / "rgb").glob("*.jpg"))):
            camera.send(CompressedImage(header=header(10 + index), format="jpeg", data=path.read_bytes()))
            got = camera.wait_stamp(1010 + index, ["depth", "semantic/overlay"])
            assert (got["depth"].width, got["depth"].height) == (640, 480)
    camera.close()
    graph.stop_perception(node)


def real_frames() -> list[tuple[str, Image]]:
    if not REALDATA.is_dir():
        return []
    realsense = cv2.imread(str(sorted((REALDATA / "realsense_d435i" / "color").glob("*.png"))[0]), cv2.IMREAD_COLOR)
    kitti = cv2.imread(str(sorted((REALDATA / "metric3d_demo" / "kitti_demo" / "rgb").glob("*.png"))[0]), cv2.IMREAD_COLOR)
    euroc = cv2.imread(str(sorted((REALDATA / "euroc_mono" / "ir0").glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE)
    return [
        ("realsense 848x480 bgr8", array_to_image_msg(realsense, "bgr8", header(500))),
        ("kitti 1242x375 rgb8", array_to_image_msg(np.ascontiguousarray(kitti[..., ::-1]), "rgb8", header(501))),
        ("euroc 752x480 mono8", array_to_image_msg(euroc, "mono8", header(502))),
    ]


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent (it ships beside the project checkout, not in it)")
def test_real_frames_go_through_the_node(node: PerceptionNode, rig: Rig) -> None:
    frames = real_frames()
    assert [(m.width, m.height) for _, m in frames] == [(848, 480), (1242, 375), (752, 480)]
    for name, msg in frames:
        rig.send(msg)
        got = rig.wait_stamp(msg.header.stamp.sec, ["depth", "semantic", "semantic/overlay", "normals", "depth/color"])
        for topic, out in got.items():
            assert (out.width, out.height) == (msg.width, msg.height), f"{name} {topic}"
        depth = image_msg_to_array(got["depth"])
        assert np.isfinite(depth).mean() > 0.99, name  # letterbox padding is cropped away: every pixel has an estimate


def status_of(msgs: list, node_name: str) -> list:
    return [s for m in msgs for s in m.status if s.name.startswith(f"{node_name}:")]


def test_diagnostics_report_rates_latency_model_and_stalls(graph: RosGraph, tiny_model: Path) -> None:
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    watched = make_node(graph, "watched", {"model.path": str(tiny_model), "qos.reliability": "reliable", "diagnostics.stall_timeout_s": 0.5}, "/watched")
    assert watched.trigger_configure() == TransitionCallbackReturn.SUCCESS and watched.trigger_activate() == TransitionCallbackReturn.SUCCESS
    # no input at all: WARN naming the topic
    assert diagnostics.wait_for(lambda msgs: any(s.level == b"\x01" and "no input on '/watched/image'" in s.message for s in status_of(msgs, "watched")), 10)
    publisher = graph.helper.create_publisher(Image, "/watched/image", RELIABLE)
    depth = graph.collect(Image, "/watched/depth", RELIABLE)
    assert wait_until(lambda: publisher.get_subscription_count() == 1 and watched.cameras[0].publishers["depth"].get_subscription_count() == 1, 10)
    for i in range(4):
        publisher.publish(frame_msg(600 + i))
        time.sleep(0.15)
    assert depth.wait_for(lambda msgs: len(msgs) >= 1, 20)
    diagnostics.clear()
    assert diagnostics.wait_for(lambda msgs: len(status_of(msgs, "watched")) >= 1, 5)
    values = {kv.key: kv.value for kv in status_of(diagnostics.messages, "watched")[-1].values}
    for stage in ("decode", "graph", "messages", "publish"):
        assert float(values[f"latency_{stage}_median_ms"]) >= 0.0 and float(values[f"latency_{stage}_p95_ms"]) >= float(values[f"latency_{stage}_median_ms"])
    assert float(values["input_rate_hz"]) > 0 and float(values["output_rate_hz"]) > 0
    assert int(values["frames_received"]) == 4 and int(values["frames_processed"]) + int(values["frames_dropped"]) == 4
    assert values["backend"] == "onnxruntime (auto)" and len(values["model_sha256"]) == 64 and values["state"] == "active"
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(watched)


def test_fallback_backend_on_load_and_runtime_failure(graph: RosGraph, tiny_model: Path) -> None:
    # TensorRT cannot load here (no library, no GPU): activation falls back to onnxruntime on CPU
    node = make_node(graph, "fallback", {"model.path": str(tiny_model), "model.backend": "tensorrt", "qos.reliability": "reliable"}, "/fallback")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node.diagnostics_values()["backend"] == "onnxruntime (cpu)"
    graph.stop_perception(node)
    # a backend that fails while running is replaced by the fallback, and the frame is still served
    node = make_node(graph, "fallback2", {"model.path": str(tiny_model), "model.provider": "auto", "qos.reliability": "reliable"}, "/fallback2")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def broken(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    node.backend.pipeline.run_batch = broken
    publisher = graph.helper.create_publisher(Image, "/fallback2/image", RELIABLE)
    semantic = graph.collect(Image, "/fallback2/semantic", RELIABLE)
    assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["semantic"].get_subscription_count() == 1, 10)
    publisher.publish(frame_msg(700))
    assert semantic.wait_for(lambda msgs: len(msgs) == 1, 20)
    values = node.diagnostics_values()
    assert values["backend"] == "onnxruntime (cpu)" and values["backend_fallbacks"] == 1 and values["frames_failed"] == 0
    # without a fallback the failure is counted and reported as an ERROR, and the node keeps running
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS and node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.set_parameters([Parameter("model.fallback_backend", value="")])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    node.backend.pipeline.run_batch = broken
    assert wait_until(lambda: publisher.get_subscription_count() == 1, 10)
    publisher.publish(frame_msg(701))
    assert wait_until(lambda: node.diagnostics_values()["inference_errors"] == 1, 10)
    assert "illegal memory access" in node.backend.error
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(node)
