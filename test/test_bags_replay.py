"""Live replay through perception_node: the recorded outputs score exactly like offline evaluation."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
from bags_support import FRAMES, make_synthetic_bag, make_two_camera_bag

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize  # noqa: E402
from mtl_perception.bags.io import BagReader  # noqa: E402
from mtl_perception.bags.replay import ReplayOptions, replay_bag  # noqa: E402
from mtl_perception.ros.domain import isolate_ros_domain  # noqa: E402


@pytest.fixture(scope="module")
def domain() -> int:
    """A private ROS domain for this module's graph (set before any rclpy.init), localhost discovery only."""
    return isolate_ros_domain(offset=57)


def serve(domain: int, values: dict[str, object]) -> Iterator[object]:
    """perception_node under /perception with ``values``, active, reliable QoS; released afterwards."""
    from mtl_perception.ros.node import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    values = {"model.provider": "cpu", "qos.reliability": "reliable", "qos.output_depth": 10, **values}
    node = PerceptionNode(namespace="/perception", context=context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in {"autostart": False, **values}.items()])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    assert node.trigger_configure().name == "SUCCESS" and node.trigger_activate().name == "SUCCESS"
    yield node
    node.release()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    thread.join(5)


@pytest.fixture()
def running_node(domain: int, model_file: Path) -> Iterator[object]:
    """perception_node reading the bag tools' camera topics."""
    yield from serve(domain, {"model.path": str(model_file), "input.image_topic": "/camera/image_raw",
                              "input.camera_info_topic": "/camera/camera_info"})


@pytest.fixture()
def two_camera_node(domain: int, model_file: Path) -> Iterator[object]:
    """One perception_node serving the /front and /rear cameras (outputs under /perception/front, /perception/rear)."""
    values: dict[str, object] = {"model.path": str(model_file), "cameras.names": ["front", "rear"], "processing.batch_wait_ms": 20.0}
    for camera in ("front", "rear"):
        values[f"cameras.{camera}.image_topic"] = f"/{camera}/image_raw"
        values[f"cameras.{camera}.camera_info_topic"] = f"/{camera}/camera_info"
    yield from serve(domain, values)


def test_online_through_the_node_equals_offline(tmp_path: Path, running_node: object, model_file: Path) -> None:
    bag = make_synthetic_bag(tmp_path / "bag", "mcap")
    report = replay_bag(bag, ReplayOptions(rate=2.0, record=str(tmp_path / "recording"), wait_s=30, settle_s=1.0), log=print)
    assert report.subscribers_found
    assert report.published == {"/camera/image_raw": FRAMES, "/camera/camera_info": FRAMES}
    processed = running_node.diagnostics_values()["frames_processed"]  # type: ignore[attr-defined]
    recorded = report.recorded["/perception/depth"]
    assert 1 <= recorded <= processed <= FRAMES
    assert report.recorded["/perception/semantic/classes"] == 1
    with BagReader(report.record_path) as reader:  # camera as published, ground truth copied for self-contained scoring
        assert reader.topics["/camera/image_raw"].count == FRAMES and reader.topics["/gt/depth"].count == FRAMES
        # the node's offered QoS is recorded as discovery reports it (rosbag2 replays a topic with it; discovery
        # carries no history depth, so it reads 0 there as in `ros2 bag record`): the class table stays latched
        classes_qos = reader.offered_qos("/perception/semantic/classes")
        assert [(q.durability.name, q.reliability.name) for q in classes_qos] == [("TRANSIENT_LOCAL", "RELIABLE")]
        depth_qos = reader.offered_qos("/perception/depth")
        assert [(q.durability.name, q.reliability.name) for q in depth_qos] == [("VOLATILE", "RELIABLE")]
        assert all(reader.offered_qos(topic) for topic in reader.topics)
    source = next(Path(bag).glob("*.mcap")).read_bytes()  # MCAP channels carry the type hash as rosbag2_storage_mcap writes it
    assert source.count(b"topic_type_hash") >= 4 and source.count(b"offered_qos_profiles") >= 4

    online_settings = BagEvalSettings(predictions_from_bag=True, progress=False)
    online_results = evaluate_bags([report.record_path], online_settings)
    online = summarize(online_results, online_settings)
    stamps = frozenset(record.stamp_ns for record in online_results[0].records)
    offline_settings = BagEvalSettings(model=str(model_file), backend_options={"provider": "cpu"}, only_stamps=stamps, progress=False)
    offline = summarize(evaluate_bags([bag], offline_settings), offline_settings)

    assert online["aggregate"]["frames_evaluated"] == offline["aggregate"]["frames_evaluated"] == len(stamps) >= recorded
    assert set(online["aggregate"]["metrics"]) == {"depth", "semantic", "normals"}
    assert online["aggregate"]["flat_metrics"] == pytest.approx(offline["aggregate"]["flat_metrics"], rel=1e-6, abs=1e-9, nan_ok=True)
    assert online["aggregate"]["depth_coverage"] == pytest.approx(offline["aggregate"]["depth_coverage"])
    # end-to-end latency from the recording's log times: one positive sample per frame
    latency = online["aggregate"]["latency"]["total"]
    assert latency["count"] == len(stamps) and latency["min_ms"] > 0


def test_replay_without_a_node_says_so(tmp_path: Path, domain: int) -> None:
    bag = make_synthetic_bag(tmp_path / "bag", frames=2)
    lines: list[str] = []
    report = replay_bag(bag, ReplayOptions(rate=10.0, wait_s=0.3, start_pause_s=0.0), log=lines.append)
    assert not report.subscribers_found and report.published["/camera/image_raw"] == 2
    assert any("nobody subscribed to /camera/image_raw" in line for line in lines)


def test_replay_of_several_cameras_records_each_one_under_its_namespace(tmp_path: Path, two_camera_node: object,
                                                                          model_file: Path) -> None:
    bag = make_two_camera_bag(tmp_path / "two_cameras")
    options = ReplayOptions(rate=2.0, all_cameras=True, record=str(tmp_path / "recording"), wait_s=30, settle_s=1.0)
    report = replay_bag(bag, options, log=print)
    assert report.subscribers_found
    assert report.published == {f"/{c}/{t}": 3 for c in ("front", "rear") for t in ("image_raw", "camera_info")}
    assert all(report.recorded[f"/perception/{camera}/depth"] >= 1 for camera in ("front", "rear"))
    assert report.recorded["/perception/front/semantic/classes"] == report.recorded["/perception/rear/semantic/classes"] == 1
    with BagReader(report.record_path) as reader:  # each camera's ground truth copied beside its outputs
        assert reader.topics["/front/gt/depth"].count == reader.topics["/gt/rear/depth"].count == 3
    online_settings = BagEvalSettings(predictions_from_bag=True, all_cameras=True, progress=False)
    online_results = evaluate_bags([report.record_path], online_settings)  # each camera's outputs under /perception/<camera>
    assert [(r.topics.camera, r.topics.ground_truth, r.topics.predictions["depth"]) for r in online_results] == [
        ("/front/image_raw", {"depth": "/front/gt/depth"}, "/perception/front/depth"),
        ("/rear/image_raw", {"depth": "/gt/rear/depth"}, "/perception/rear/depth")]
    for camera, online_result in zip(("front", "rear"), online_results):
        stamps = frozenset(record.stamp_ns for record in online_result.records)
        assert 1 <= len(stamps) == report.recorded[f"/perception/{camera}/depth"]
        offline_settings = BagEvalSettings(model=str(model_file), backend_options={"provider": "cpu"}, only_stamps=stamps,
                                           progress=False, image_topic=f"/{camera}/image_raw",
                                           camera_info_topic=f"/{camera}/camera_info", gt_topics=dict(online_result.topics.ground_truth))
        online = summarize([online_result], online_settings)["aggregate"]
        offline = summarize(evaluate_bags([bag], offline_settings), offline_settings)["aggregate"]
        assert online["frames_evaluated"] == offline["frames_evaluated"] == len(stamps)
        assert online["flat_metrics"] == pytest.approx(offline["flat_metrics"], rel=1e-6, abs=1e-9, nan_ok=True)


def test_replay_of_several_cameras_needs_camera_names(tmp_path: Path) -> None:
    from mtl_perception.bags.io import BagError
    from mtl_perception.bags.replay import played_cameras

    bag = make_two_camera_bag(tmp_path / "two_cameras")
    with BagReader(bag) as reader:
        cameras = played_cameras(reader, ReplayOptions(all_cameras=True, namespace="/robot"))
        assert [(c.image_topic, c.camera_info_topic, c.copied_topics, c.namespace) for c in cameras] == [
            ("/front/image_raw", "/front/camera_info", ("/front/gt/depth",), "/robot/front"),
            ("/rear/image_raw", "/rear/camera_info", ("/gt/rear/depth",), "/robot/rear")]
        with pytest.raises(ValueError, match="do not name --image-topic"):
            played_cameras(reader, ReplayOptions(all_cameras=True, image_topic="/front/image_raw"))
    single = make_synthetic_bag(tmp_path / "one", frames=1)  # /camera/image_raw: "camera" names no camera
    with BagReader(single) as reader, pytest.raises(BagError, match="names no camera"):
        played_cameras(reader, ReplayOptions(all_cameras=True))
