"""Bags written by bag-make, read back and evaluated: ground truth as prediction is perfect, in every storage."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from bags_support import (
    FRAMES,
    REALDATA,
    HEIGHT,
    V5_TEMPLATE,
    WIDTH,
    ground_truth_as_prediction,
    make_synthetic_bag,
    make_two_camera_bag,
    rewrite_metadata_as_version5,
)

from mtl_perception.bags import messages
from mtl_perception.bags.io import BagReader, BagWriter, header_stamp_ns
from mtl_perception.bags.make import DEFAULT_START_NS
from mtl_perception.inference.processing import to_rgb
from mtl_perception.bags.matching import match_nearest
from mtl_perception.bags.topics import TopicError, choose_topics
from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES
from mtl_perception.data.synthetic import render_sequence
from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize
from mtl_perception.metrics import flatten_metrics


def assert_perfect(summary: dict, frames: int = FRAMES) -> None:
    figures = summary["aggregate"]
    metrics = figures["metrics"]
    assert figures["frames_evaluated"] == frames and figures["frames_failed"] == 0
    assert metrics["depth"]["abs_rel"] == 0.0 and metrics["depth"]["rmse"] == 0.0 and metrics["depth"]["delta1"] == 1.0
    assert metrics["semantic"]["miou"] == 1.0 and metrics["semantic"]["pixel_acc"] == 1.0
    assert metrics["normals"]["mean"] < 1e-4 and metrics["normals"]["within_11_25"] == 100.0
    assert figures["depth_coverage"] == 1.0


@pytest.mark.parametrize("storage,compression", [("sqlite3", "none"), ("mcap", "none"), ("mcap", "jpeg"), ("sqlite3", "png")])
def test_ground_truth_as_prediction_is_perfect(tmp_path: Path, storage: str, compression: str) -> None:
    bag = make_synthetic_bag(tmp_path / "bag", storage, compression=compression)
    settings = ground_truth_as_prediction()
    results = evaluate_bags([bag], settings)
    summary = summarize(results, settings)
    assert summary["bags"][0]["storage"] == storage
    assert_perfect(summary)
    assert summary["classes"] == SYNTH_CLASS_NAMES
    assert len(results[0].strip) == 4 and all(len(row) == 3 for row in results[0].strip)  # input | overlay | depth


@pytest.mark.parametrize("version", [8, 5])
def test_older_metadata_versions_read(tmp_path: Path, version: int) -> None:
    bag = make_synthetic_bag(tmp_path / "bag", "sqlite3", version=8)
    if version == 5:
        if not V5_TEMPLATE.is_file():
            pytest.skip(f"{V5_TEMPLATE} (the real version-5 metadata example) is absent")
        rewrite_metadata_as_version5(bag)
    assert f"version: {version}" in (bag / "metadata.yaml").read_text()
    settings = ground_truth_as_prediction()
    assert_perfect(summarize(evaluate_bags([bag], settings), settings))


def test_bag_make_writes_the_frames_exactly(tmp_path: Path) -> None:
    bag = make_synthetic_bag(tmp_path / "bag")
    frames = list(render_sequence(0, FRAMES, HEIGHT, WIDTH))
    seen: dict[str, list] = {}
    with BagReader(bag) as reader:
        assert set(reader.topics) == {"/camera/image_raw", "/camera/camera_info", "/gt/depth", "/gt/semantic", "/gt/normals", "/gt/semantic/classes"}
        for topic, log_time, raw in reader.messages(reader.topics):
            seen.setdefault(topic, []).append((log_time, reader.deserialize(raw, topic), raw))
    names, _, ignore = messages.parse_class_table(seen["/gt/semantic/classes"][0][1].data, "test")
    assert names == SYNTH_CLASS_NAMES and ignore == 255
    for index, frame in enumerate(frames):
        stamp = DEFAULT_START_NS + index * 100_000_000  # 10 Hz
        camera_log, camera, raw = seen["/camera/image_raw"][index]
        assert camera_log == stamp == messages.stamp_to_ns(camera.header.stamp) == header_stamp_ns(raw)
        assert camera.header.frame_id == "camera_optical_frame" and camera.encoding == "rgb8"
        np.testing.assert_array_equal(to_rgb(*messages.decode_image(camera, "sensor_msgs/msg/Image")), frame.rgb)
        info = seen["/camera/camera_info"][index][1]
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), frame.K)
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        depth = seen["/gt/depth"][index][1]
        assert depth.encoding == "32FC1"
        pixels, _ = messages.decode_image(depth, "sensor_msgs/msg/Image")
        np.testing.assert_array_equal(np.isnan(pixels), frame.depth <= 0)
        np.testing.assert_array_equal(pixels[frame.depth > 0], frame.depth[frame.depth > 0])
        labels, encoding = messages.decode_image(seen["/gt/semantic"][index][1], "sensor_msgs/msg/Image")
        assert encoding == "mono8"
        np.testing.assert_array_equal(labels, frame.labels)
        normals, encoding = messages.decode_image(seen["/gt/normals"][index][1], "sensor_msgs/msg/Image")
        assert encoding == "32FC3"
        np.testing.assert_array_equal(normals, frame.normals)


def test_match_nearest_hand_computed() -> None:
    assert match_nearest([10, 20, 30, 40], [41, 9, 22, 100], tolerance_ns=2) == [1, 2, None, 0]
    assert match_nearest([15], [10, 20], tolerance_ns=5) == [0]  # tie: the earlier candidate
    assert match_nearest([1, 2], [], tolerance_ns=10) == [None, None]
    with pytest.raises(ValueError, match="non-negative"):
        match_nearest([1], [1], -1)


def _shifted_ground_truth_bag(source: Path, target: Path, shift_ns: int) -> Path:
    """A copy of ``source`` whose ground-truth messages carry stamps ``shift_ns`` later."""
    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, info in reader.topics.items():
            writer.add_topic(topic, info.msgtype)
        for topic, log_time, raw in reader.messages(reader.topics):
            if topic.startswith("/gt/") and topic != "/gt/semantic/classes":
                message = reader.deserialize(raw, topic)
                message.header = messages.header(messages.stamp_to_ns(message.header.stamp) + shift_ns)
                writer.write(topic, log_time + shift_ns, message)
            else:
                writer.write_raw(topic, log_time, raw)
    return target


def test_ground_truth_matched_within_the_stamp_tolerance(tmp_path: Path, model_file: Path) -> None:
    bag = _shifted_ground_truth_bag(make_synthetic_bag(tmp_path / "bag"), tmp_path / "shifted", 3_000_000)
    inside = BagEvalSettings(model=str(model_file), tolerance_s=0.005, progress=False)
    outside = BagEvalSettings(model=str(model_file), tolerance_s=0.001, progress=False)
    matched, unmatched = evaluate_bags([bag], inside)[0], evaluate_bags([bag], outside)[0]
    assert matched.frames_with_gt == {"depth": FRAMES, "semantic": FRAMES, "normals": FRAMES}
    assert unmatched.frames_with_gt == {} and unmatched.frames_evaluated == FRAMES
    assert unmatched.unmatched == {"gt/depth": FRAMES, "gt/semantic": FRAMES, "gt/normals": FRAMES}
    summary = summarize([unmatched], outside)
    assert summary["aggregate"]["metrics"] == {}
    assert set(summary["aggregate"]["stability"]) == {"depth_rel_change", "label_flip_fraction", "normal_change_deg"}
    assert any("no frame had matching ground truth" in note for note in summary["bags"][0]["notes"])


def test_topic_guessing_and_its_errors(tmp_path: Path) -> None:
    bag = make_synthetic_bag(tmp_path / "bag")
    with BagReader(bag) as reader:
        choice = choose_topics(reader)
        assert (choice.camera, choice.camera_info, choice.classes) == ("/camera/image_raw", "/camera/camera_info", "/gt/semantic/classes")
        assert choice.ground_truth == {"depth": "/gt/depth", "semantic": "/gt/semantic", "normals": "/gt/normals"}
        with pytest.raises(TopicError, match=r"/nope.*--image-topic.*/camera/image_raw \(sensor_msgs/msg/Image, 6 msgs\)"):
            choose_topics(reader, image_topic="/nope")
        with pytest.raises(TopicError, match="has type sensor_msgs/msg/CameraInfo"):
            choose_topics(reader, image_topic="/camera/camera_info")
        with pytest.raises(TopicError, match="no prediction topics under /perception"):
            choose_topics(reader, predictions_from_bag=True)
    two_cameras = tmp_path / "two"
    with BagReader(bag) as reader, BagWriter(two_cameras) as writer:
        for topic, info in reader.topics.items():
            writer.add_topic(topic, info.msgtype)
        writer.add_topic("/left/image_raw", "sensor_msgs/msg/Image")
        for topic, log_time, raw in reader.messages(reader.topics):
            writer.write_raw(topic, log_time, raw)
            if topic == "/camera/image_raw":
                writer.write_raw("/left/image_raw", log_time, raw)
    with BagReader(two_cameras) as reader:
        with pytest.raises(TopicError, match=r"several topics could be the camera image \(/camera/image_raw, /left/image_raw\) in bag .*; choose one with --image-topic"):
            choose_topics(reader)
        assert choose_topics(reader, image_topic="/left/image_raw").camera == "/left/image_raw"


def test_model_evaluation_output_bag_and_parallel_jobs(tmp_path: Path, model_file: Path) -> None:
    first = make_synthetic_bag(tmp_path / "first", "sqlite3")
    second = make_synthetic_bag(tmp_path / "second", "mcap", frames=4, seed=1)
    settings = BagEvalSettings(model=str(model_file), output_bag=str(tmp_path / "predictions"), progress=False)
    serial = evaluate_bags([first, second], settings, jobs=1)
    summary = summarize(serial, settings)
    assert [r.frames_evaluated for r in serial] == [FRAMES, 4]
    assert summary["aggregate"]["latency"]["total"]["count"] == FRAMES + 4
    assert set(summary["aggregate"]["latency"]) == {"decode", "graph", "total"}
    assert math.isfinite(summary["aggregate"]["metrics"]["depth"]["abs_rel"])
    assert set(summary["aggregate"]["metrics"]) == {"depth", "semantic", "normals"}
    # the pooled aggregate equals evaluating the frames of both bags as one stream: states add up
    pooled = serial[0].states["semantic"] + serial[1].states["semantic"]
    assert summary["aggregate"]["metrics"]["semantic"]["pixel_acc"] == pytest.approx(np.trace(pooled.reshape(7, 7)) / pooled.sum())

    output = Path(serial[0].output_bag)
    assert output == tmp_path / "predictions" / "first_predictions"
    with BagReader(output) as reader:
        counts = {name: info.count for name, info in reader.topics.items()}
        assert {t: counts[t] for t in ("/perception/depth", "/perception/semantic", "/perception/normals",
                                       "/perception/depth/color", "/perception/semantic/overlay")} == dict.fromkeys(
            ("/perception/depth", "/perception/semantic", "/perception/normals", "/perception/depth/color", "/perception/semantic/overlay"), FRAMES)
        assert counts["/camera/image_raw"] == FRAMES and counts["/gt/depth"] == FRAMES
        camera = [header_stamp_ns(raw) for _, _, raw in reader.messages(["/camera/image_raw"])]
        predicted = [(header_stamp_ns(raw), reader.deserialize(raw, t)) for t, _, raw in reader.messages(["/perception/depth"])]
        assert [s for s, _ in predicted] == camera
        assert all((m.height, m.width, m.encoding, m.header.frame_id) == (HEIGHT, WIDTH, "32FC1", "camera_optical_frame") for _, m in predicted)
    # the prediction bag, scored as recorded predictions, gives the model's figures exactly
    again = BagEvalSettings(predictions_from_bag=True, progress=False)
    replayed = summarize(evaluate_bags([output], again), again)
    assert flatten_metrics(replayed["bags"][0]["metrics"]) == pytest.approx(flatten_metrics(summary["bags"][0]["metrics"]), nan_ok=True)

    parallel_settings = BagEvalSettings(model=str(model_file), progress=False)
    parallel = summarize(evaluate_bags([first, second], parallel_settings, jobs=2), parallel_settings)
    assert parallel["aggregate"]["flat_metrics"] == pytest.approx(summary["aggregate"]["flat_metrics"], nan_ok=True)
    assert [b["frames"]["evaluated"] for b in parallel["bags"]] == [FRAMES, 4]


def test_real_mono_camera_without_ground_truth(tmp_path: Path, model_file: Path) -> None:
    """EuRoC grayscale frames (mono8, 752x480, real stamps): no ground truth, so latency and stability only."""
    folder = REALDATA / "euroc_mono" / "ir0"
    if not folder.is_dir():
        pytest.skip(f"{folder} (real EuRoC frames) is absent")
    import cv2

    files = sorted(folder.glob("*.png"))[:4]
    with BagWriter(tmp_path / "euroc", "mcap") as writer:
        writer.add_topic("/cam0/image_raw", "sensor_msgs/msg/Image")
        for path in files:
            stamp = int(path.stem)  # the file name is the stamp in ns
            writer.write("/cam0/image_raw", stamp, messages.image_message(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), "mono8", stamp))
    settings = BagEvalSettings(model=str(model_file), progress=False)
    results = evaluate_bags([tmp_path / "euroc"], settings)
    summary = summarize(results, settings)
    bag = summary["bags"][0]
    assert bag["topics"]["camera"] == "/cam0/image_raw" and bag["topics"]["ground_truth"] == {}
    assert bag["frames"]["evaluated"] == len(files) and summary["aggregate"]["metrics"] == {}
    assert summary["aggregate"]["latency"]["total"]["count"] == len(files)
    assert set(summary["aggregate"]["stability"]) == {"depth_rel_change", "label_flip_fraction", "normal_change_deg"}
    assert [r.stamp_ns for r in results[0].records] == [int(p.stem) for p in files]
    assert results[0].strip[0][0][1].shape == (204, 320, 3)  # 752x480 shrunk to the strip width


def test_folder_dataset_to_bag(tmp_path: Path) -> None:
    """bag-make from a folder dataset carries its frames, intrinsics and class table into the bag."""
    from mtl_perception.bags.make import BagOptions, folder_source, make_bag
    from mtl_perception.data.folder import write_dataset_meta, write_frame
    from mtl_perception.data.synth_classes import SYNTH_PALETTE

    frames = list(render_sequence(4, 3, HEIGHT, WIDTH))
    for index, frame in enumerate(frames):
        write_frame(tmp_path / "dataset", index, frame, depth_format="npy")
    write_dataset_meta(tmp_path / "dataset", frames[0].K, SYNTH_CLASS_NAMES, SYNTH_PALETTE)
    source = folder_source(tmp_path / "dataset")
    assert source.count == 3 and source.class_names == SYNTH_CLASS_NAMES
    bag = make_bag(tmp_path / "bag", source, BagOptions(storage="mcap", compression="png"), progress=False).path
    settings = ground_truth_as_prediction()
    results = evaluate_bags([bag], settings)
    assert_perfect(summarize(results, settings), frames=3)
    with BagReader(bag) as reader:
        shown = [to_rgb(*messages.decode_image(reader.deserialize(raw, t), "sensor_msgs/msg/CompressedImage"))
                 for t, _, raw in reader.messages(["/camera/image_raw/compressed"])]
    for picture, frame in zip(shown, frames):
        np.testing.assert_array_equal(picture, frame.rgb)  # PNG is lossless


def test_all_cameras_evaluates_each_camera_with_its_own_topics(tmp_path: Path, model_file: Path) -> None:
    from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize

    bag = make_two_camera_bag(tmp_path / "two_cameras")
    settings = BagEvalSettings(model=str(model_file), backend_options={"provider": "cpu"}, all_cameras=True, progress=False)
    results = evaluate_bags([bag], settings)
    assert [(r.topics.camera, r.topics.camera_info, r.topics.ground_truth) for r in results] == [
        ("/front/image_raw", "/front/camera_info", {"depth": "/front/gt/depth"}),
        ("/rear/image_raw", "/rear/camera_info", {"depth": "/gt/rear/depth"}),
    ]
    assert [r.frames_evaluated for r in results] == [3, 3]
    for result in results:  # the same figures as evaluating that camera alone, its topics named
        alone = evaluate_bags([bag], BagEvalSettings(model=str(model_file), backend_options={"provider": "cpu"}, progress=False,
                                                     image_topic=result.topics.camera, camera_info_topic=result.topics.camera_info,
                                                     gt_topics=dict(result.topics.ground_truth)))[0]
        np.testing.assert_array_equal(alone.states["depth"], result.states["depth"])
    summary = summarize(results, settings)
    assert summary["aggregate"]["frames_evaluated"] == 6 and len(summary["bags"]) == 2
    with pytest.raises(ValueError, match="several topics could be the camera image"):
        evaluate_bags([bag], BagEvalSettings(model=str(model_file), backend_options={"provider": "cpu"}, progress=False))
