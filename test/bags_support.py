"""Shared helpers of the bag, report and demo tests: small synthetic bags, bag-eval settings, CLI runs.

Imported by test_bags_*, test_report_* and test_demo* modules; the tiny model they evaluate is conftest.py's
session fixture ``model_file`` (random weights, the synthetic class set, 64x96 input).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from shared_data import shared_path

HEIGHT, WIDTH = 64, 96
FRAMES = 6
REALDATA = shared_path("realdata")
V5_TEMPLATE = REALDATA / "euroc_mono" / "original_bag_metadata.yaml"
GT_TOPICS = {"depth": "/gt/depth", "semantic": "/gt/semantic", "normals": "/gt/normals"}


def make_synthetic_bag(path: Path, storage: str = "sqlite3", frames: int = FRAMES, compression: str = "none",
                       seed: int = 0, version: int = 9) -> Path:
    """A small synthetic bag (camera, camera info, ground truth, class table) written by bag-make's code."""
    from mtl_perception.bags.make import BagOptions, make_bag, synthetic_source

    options = BagOptions(storage=storage, compression=compression, version=version)  # type: ignore[arg-type]
    return make_bag(path, synthetic_source(seed, frames, HEIGHT, WIDTH), options, progress=False).path


def ground_truth_as_prediction(**overrides: object) -> "BagEvalSettings":  # noqa: F821
    """Settings that score the ground-truth topics as if they were predictions (perfect by construction)."""
    from mtl_perception.bags.evaluation import BagEvalSettings

    return BagEvalSettings(predictions_from_bag=True, prediction_topics=dict(GT_TOPICS), progress=False, **overrides)  # type: ignore[arg-type]


def rewrite_metadata_as_version5(bag: Path) -> None:
    """Rewrite a bag's metadata.yaml in rosbag2 format version 5, laid out like a real version-5 bag's.

    The real example (``V5_TEMPLATE``, from a bag recorded by ros2 bag) supplies the key set and order;
    the bag's own figures fill it. Version 5 has no type hashes, ros_distro or custom_data, and keeps the
    offered QoS profiles as one YAML string (as version 8 does: copied as they are).
    """
    ours = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    template = yaml.safe_load(V5_TEMPLATE.read_text())["rosbag2_bagfile_information"]
    topics = [{"topic_metadata": {"name": t["topic_metadata"]["name"], "type": t["topic_metadata"]["type"],
                                  "serialization_format": t["topic_metadata"]["serialization_format"],
                                  "offered_qos_profiles": t["topic_metadata"].get("offered_qos_profiles", "")},
               "message_count": t["message_count"]} for t in ours["topics_with_message_count"]]
    values = {"version": 5, "storage_identifier": ours["storage_identifier"], "duration": ours["duration"],
              "starting_time": ours["starting_time"], "message_count": ours["message_count"], "topics_with_message_count": topics,
              "compression_format": "", "compression_mode": "", "relative_file_paths": ours["relative_file_paths"], "files": ours["files"]}
    assert set(values) == set(template), f"version-5 keys {sorted(template)} changed"
    rewritten = {key: values[key] for key in template}  # the template's key order
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": rewritten}, sort_keys=False))


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mtl-perception ARGS`` in a fresh interpreter (what a user runs), output captured."""
    return subprocess.run([sys.executable, "-m", "mtl_perception.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def png_is_valid(path: Path) -> bool:
    """True when the file starts with the PNG signature and OpenCV decodes it to a non-empty image."""
    import cv2

    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    return image is not None and image.size > 0


def make_two_camera_bag(path: Path) -> Path:
    """/front and /rear cameras (other scenes, other intrinsics), each with camera info and ground truth under its name."""
    from mtl_perception.bags import messages
    from mtl_perception.bags.io import BagWriter
    from mtl_perception.bags.make import DEFAULT_START_NS
    from mtl_perception.data.synthetic import render_frame

    writer = BagWriter(path, "sqlite3")
    for camera in ("front", "rear"):
        writer.add_topic(f"/{camera}/image_raw", "sensor_msgs/msg/Image")
        writer.add_topic(f"/{camera}/camera_info", "sensor_msgs/msg/CameraInfo")
    writer.add_topic("/front/gt/depth", "sensor_msgs/msg/Image")
    writer.add_topic("/gt/rear/depth", "sensor_msgs/msg/Image")
    for index in range(3):
        stamp = DEFAULT_START_NS + index * 100_000_000
        for camera, seed, gt in (("front", index, "/front/gt/depth"), ("rear", 50 + index, "/gt/rear/depth")):
            scene = render_frame(seed, 64, 96)
            writer.write(f"/{camera}/image_raw", stamp, messages.image_message(scene.rgb, "rgb8", stamp, camera))
            writer.write(f"/{camera}/camera_info", stamp, messages.camera_info_message(scene.K, 96, 64, stamp, camera))
            writer.write(gt, stamp, messages.image_message(scene.depth.astype(np.float32), "32FC1", stamp, camera))
    return writer.close()
