"""The deploy graph's point buffers -> sensor_msgs/PointCloud2 with x, y, z, rgb and label fields.

Layout of one point (20 bytes, little-endian): x, y, z float32 metres in the camera optical frame
(REP-103: x right, y down, z forward) at offsets 0, 4, 8; ``rgb`` at 12, a float32 whose bits are
0x00RRGGBB (the packing RViz's "RGB8" colour transformer reads); ``label`` uint8 class id at 16
(255 = no class); 3 padding bytes. The graph computes ``points_xyz`` (bytes 0..11) and
``points_extra`` (bytes 12..19) of every point on the strided grid; the message is the two side by side.

Pixels without a depth estimate (NaN): an unorganised cloud (``organized=False``, height 1) leaves them
out and is dense; an organised cloud (height x width of the strided grid) keeps one point per pixel
with x, y, z NaN and is not dense.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mtl_perception.ros.cdr import pointcloud_cdr

POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "label"], "formats": ["<f4", "<f4", "<f4", "<u4", "u1"], "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
FLOAT32, UINT8 = 7, 2  # sensor_msgs/PointField datatypes
FIELDS = (("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 12, FLOAT32, 1), ("label", 16, UINT8, 1))  # (name, offset, datatype, count)
NO_LABEL = 255


def point_records(xyz: np.ndarray, extra: np.ndarray, organized: bool) -> np.ndarray:
    """(rows, columns, 20) uint8 point records from the graph's (rows, columns, 3) float32 and (rows, columns, 8) uint8 buffers.

    Unorganised clouds keep only the points with a depth: (1, count, 20).
    """
    if xyz.dtype != np.float32 or xyz.ndim != 3 or xyz.shape[2] != 3 or extra.dtype != np.uint8 or extra.shape != xyz.shape[:2] + (8,):
        raise ValueError(f"point buffers must be float32 (H, W, 3) and uint8 (H, W, 8), got {xyz.dtype} {xyz.shape} and {extra.dtype} {extra.shape}")
    records = np.empty(xyz.shape[:2] + (20,), dtype=np.uint8)
    records[..., :12] = np.ascontiguousarray(xyz, dtype="<f4").view(np.uint8)
    records[..., 12:] = extra
    if organized:
        return records
    valid = ~np.isnan(xyz[..., 2])
    return records[valid][None]


def points_message(xyz: np.ndarray, extra: np.ndarray, header: Any, organized: bool = False) -> bytes:
    """A serialised PointCloud2 of the graph's point buffers (see the module docstring), ready for ``publish``."""
    records = point_records(xyz, extra, organized)
    dense = bool(not organized or not np.isnan(xyz[..., 2]).any())
    return pointcloud_cdr(records, FIELDS, header, dense)


def pointcloud_to_array(msg: Any) -> np.ndarray:
    """The points of a PointCloud2 in this package's layout (``points_message``) as a structured (H, W) array."""
    if msg.point_step != POINT_DTYPE.itemsize or [f.name for f in msg.fields] != list(POINT_DTYPE.names):
        raise ValueError("point cloud does not have this package's x, y, z, rgb, label layout")
    dtype = POINT_DTYPE.newbyteorder(">") if msg.is_bigendian else POINT_DTYPE
    flat = np.frombuffer(msg.data, dtype=np.uint8, count=msg.row_step * msg.height)
    return flat.view(dtype).reshape(msg.height, msg.width)
