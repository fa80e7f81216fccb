"""Serialised (CDR) sensor_msgs/Image and PointCloud2 written straight from a NumPy buffer.

rclpy publishes ``bytes`` as an already serialised message (``Publisher.publish(bytes)``), and every
subscriber receives an ordinary message. Writing the CDR bytes here costs one copy of the pixel
buffer; filling an rclpy message costs three (``tobytes``, the ``data`` setter's ``array.array``, and
rclpy's conversion to the C message before serialising), which on a 2-core CPU or a Jetson's ARM cores
is most of the node's time outside the network (``benchmarks/message_fill.py`` measures both).

Layout: the ROS 2 default, plain CDR little-endian (encapsulation header 00 01 00 00), every primitive
aligned to its size counted from the end of that header; strings are a uint32 length (with the NUL),
the characters and a NUL; sequences a uint32 count and the elements. The tests check the bytes
against rclpy's own serialisation and deserialise them with rclpy.
"""
from __future__ import annotations

import struct
from typing import Any, Sequence

import numpy as np

ENCAPSULATION_CDR_LE = b"\x00\x01\x00\x00"


class _Writer:
    """Little-endian CDR fields into a list of byte chunks, alignment counted from the payload start."""

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = [ENCAPSULATION_CDR_LE]
        self.size = 0  # bytes after the encapsulation header

    def _align(self, alignment: int) -> None:
        pad = -self.size % alignment
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.size += pad

    def put(self, fmt: str, *values: Any) -> None:
        self._align(struct.calcsize(fmt[1]) if fmt[0] == "<" else 1)
        data = struct.pack(fmt, *values)
        self.chunks.append(data)
        self.size += len(data)

    def string(self, text: str) -> None:
        raw = text.encode() + b"\x00"
        self.put("<I", len(raw))
        self.chunks.append(raw)
        self.size += len(raw)

    def octets(self, data: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(data)).cast("B")
        self.put("<I", view.nbytes)
        self.chunks.append(view)
        self.size += view.nbytes

    def header(self, header: Any) -> None:
        self.put("<i", int(header.stamp.sec))
        self.put("<I", int(header.stamp.nanosec))
        self.string(str(header.frame_id))

    def bytes(self) -> bytes:
        return b"".join(self.chunks)  # the one copy of the pixel buffer


def image_cdr(pixels: np.ndarray, encoding: str, header: Any, bytes_per_pixel: int) -> bytes:
    """A serialised sensor_msgs/Image of a (H, W[, C]) buffer already in ``encoding``'s layout (native byte order)."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    out = _Writer()
    out.header(header)
    out.put("<I", height)
    out.put("<I", width)
    out.string(encoding)
    out.put("<B", int(np.little_endian is False))
    out.put("<I", width * bytes_per_pixel)
    out.octets(pixels)
    return out.bytes()


def pointcloud_cdr(records: np.ndarray, fields: Sequence[tuple[str, int, int, int]], header: Any, is_dense: bool) -> bytes:
    """A serialised sensor_msgs/PointCloud2 of (rows, columns, point_step) uint8 records.

    ``fields`` are (name, offset, datatype, count) as in sensor_msgs/PointField.
    """
    rows, columns, point_step = (int(v) for v in records.shape)
    out = _Writer()
    out.header(header)
    out.put("<I", rows)
    out.put("<I", columns)
    out.put("<I", len(fields))
    for name, offset, datatype, count in fields:
        out.string(name)
        out.put("<I", offset)
        out.put("<B", datatype)
        out.put("<I", count)
    out.put("<B", 0)  # is_bigendian: the records are little-endian
    out.put("<I", point_step)
    out.put("<I", point_step * columns)
    out.octets(records)
    out.put("<B", int(is_dense))
    return out.bytes()
