"""Serialised Image and PointCloud2 written from NumPy buffers: what rclpy reads back, field by field, and the
same length as rclpy's own serialisation (the bytes differ only in padding, which rclpy leaves uninitialised)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from mtl_perception.ros.cdr import image_cdr, pointcloud_cdr  # noqa: E402
from mtl_perception.ros.pointcloud import FIELDS  # noqa: E402

RNG = np.random.default_rng(4)
BUFFERS = [
    ("32FC1", RNG.random((5, 7), dtype=np.float32), 4),
    ("32FC3", RNG.random((3, 4, 3), dtype=np.float32), 12),
    ("bgr8", RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8), 3),
    ("mono8", RNG.integers(0, 256, (3, 5), dtype=np.uint8), 1),
]


def header(frame_id: str) -> Header:
    value = Header(frame_id=frame_id)
    value.stamp.sec, value.stamp.nanosec = -3, 123456789
    return value


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "camera_color_optical_frame"])  # every string alignment
@pytest.mark.parametrize("encoding, pixels, bytes_per_pixel", BUFFERS, ids=[b[0] for b in BUFFERS])
def test_image_reads_back_as_rclpy_writes_it(frame_id: str, encoding: str, pixels: np.ndarray, bytes_per_pixel: int) -> None:
    raw = image_cdr(pixels, encoding, header(frame_id), bytes_per_pixel)
    msg = deserialize_message(raw, Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (-3, 123456789, frame_id)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step) == (pixels.shape[0], pixels.shape[1], encoding, 0, pixels.shape[1] * bytes_per_pixel)
    assert bytes(msg.data) == pixels.tobytes()
    assert len(serialize_message(msg)) == len(raw)


@pytest.mark.parametrize("frame_id", ["", "ab", "cam"])
@pytest.mark.parametrize("dense", [True, False])
def test_pointcloud_reads_back_as_rclpy_writes_it(frame_id: str, dense: bool) -> None:
    records = RNG.integers(0, 256, (2, 9, 20), dtype=np.uint8)
    raw = pointcloud_cdr(records, FIELDS, header(frame_id), dense)
    msg = deserialize_message(raw, PointCloud2)
    assert msg.header.frame_id == frame_id and (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 9, 20, 180)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == list(FIELDS)
    assert msg.is_dense is dense and msg.is_bigendian is False and bytes(msg.data) == records.tobytes()
    assert len(serialize_message(msg)) == len(raw)
    assert all(f.datatype in (PointField.FLOAT32, PointField.UINT8) for f in msg.fields)
