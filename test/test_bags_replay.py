"""Live replay through perception_node: the recorded outputs score exactly like offline evaluation."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import pytest
from bags_support import FRAMES, make_synthetic_bag, model_file  # noqa: F401

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mtl_perception.bags.io import BagReader  # noqa: E402
from mtl_perception.bags.replay import ReplayOptions, replay_bag  # noqa: E402
from mtl_perception.evaluation.bag_eval import BagEvalSettings, evaluate_bags, summarize  # noqa: E402


@pytest.fixture(scope="module")
def domain() -> int:
    """A private ROS domain for this module's graph (set before any rclpy.init), localhost discovery only."""
    value = 1 + (os.getpid() * 13 + 57) % 100
    os.environ["ROS_DOMAIN_ID"] = str(value)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    return value


@pytest.fixture()
def running_node(domain: int, model_file: Path) -> Iterator[object]:  # noqa: F811
    """perception_node under /perception, active, reading the bag tools' camera topics with reliable QoS."""
    from mtl_perception.ros.node import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    values = {"model.path": str(model_file), "model.provider": "cpu", "input.image_topic": "/camera/image_raw",
              "input.camera_info_topic": "/camera/camera_info", "qos.reliability": "reliable", "qos.output_depth": 10}
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


def test_online_through_the_node_equals_offline(tmp_path: Path, running_node: object, model_file: Path) -> None:  # noqa: F811
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
