"""Depth image -> sensor_msgs/PointCloud2 with x, y, z, rgb and label fields.

Layout of one point (20 bytes, little-endian): x, y, z float32 metres in the camera
optical frame (REP-103: x right, y down, z forward) at offsets 0, 4, 8; ``rgb`` at 12, a float32 whose
bits are 0x00RRGGBB (the packing RViz's "RGB8" colour transformer reads); ``label`` uint8 class id at
16 (255 = no class); 3 padding bytes.

Pixels without a depth estimate (NaN, inf or <= 0): an unorganised cloud (``organized=False``,
height 1) leaves them out and is dense; an organised cloud (height x width of the strided image)
keeps one point per pixel, sets x, y, z of those to NaN and is not dense.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mtl_perception.ros.image_codec import byte_array

POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "label"], "formats": ["<f4", "<f4", "<f4", "<u4", "u1"], "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
NO_LABEL = 255


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 0x00RRGGBB (reinterpreted as float32 in the message)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def backproject(depth: np.ndarray, k: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (float64, strided grid) of every pixel: X = (u - cx) z / fx, Y = (v - cy) z / fy."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy, skew = k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"intrinsics need positive focal lengths, got fx={fx}, fy={fy}")
    z = depth[::stride, ::stride].astype(np.float64)
    v = np.arange(0, depth.shape[0], stride, dtype=np.float64)[:, None]
    u = np.arange(0, depth.shape[1], stride, dtype=np.float64)[None, :]
    y_norm = (v - cy) / fy
    x_norm = (u - cx - skew * y_norm) / fx
    return x_norm * z, y_norm * z, z


def depth_to_pointcloud(
    depth: np.ndarray,
    k: np.ndarray,
    rgb: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    stride: int = 1,
    header: Any = None,
    organized: bool = False,
) -> Any:
    """Back-project a metric depth image (H, W) with intrinsics ``k`` (3x3) into a PointCloud2.

    ``rgb`` (H, W, 3) uint8 colours the points (black when None); ``labels`` (H, W) gives class ids
    (255 when None). Every ``stride``-th pixel along both axes becomes a point.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    x, y, z = backproject(depth, k, stride)
    valid = np.isfinite(z) & (z > 0)
    points = np.zeros(z.shape, dtype=POINT_DTYPE)
    points["x"], points["y"], points["z"] = x, y, z
    if rgb is not None:
        if rgb.shape[:2] != depth.shape:
            raise ValueError(f"rgb {rgb.shape} and depth {depth.shape} sizes differ")
        points["rgb"] = pack_rgb(rgb[::stride, ::stride])
    if labels is not None:
        if labels.shape != depth.shape:
            raise ValueError(f"labels {labels.shape} and depth {depth.shape} sizes differ")
        points["label"] = np.clip(labels[::stride, ::stride], 0, NO_LABEL)
    else:
        points["label"] = NO_LABEL
    if organized:
        for name in ("x", "y", "z"):
            points[name][~valid] = np.nan
        height, width = points.shape
    else:
        points = points[valid]
        height, width = 1, int(points.shape[0])

    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
        PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
        PointField(name="label", offset=16, datatype=PointField.UINT8, count=1),
    ]
    msg.is_bigendian = False  # POINT_DTYPE is little-endian on every host
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(not organized or valid.all())
    msg.data = byte_array(points)
    return msg


def pointcloud_to_array(msg: Any) -> np.ndarray:
    """The points of a PointCloud2 written by ``depth_to_pointcloud`` as a structured (H, W) array."""
    if msg.point_step != POINT_DTYPE.itemsize or [f.name for f in msg.fields] != list(POINT_DTYPE.names):
        raise ValueError("point cloud does not have this package's x, y, z, rgb, label layout")
    dtype = POINT_DTYPE.newbyteorder(">") if msg.is_bigendian else POINT_DTYPE
    flat = np.frombuffer(msg.data, dtype=np.uint8, count=msg.row_step * msg.height)
    return flat.view(dtype).reshape(msg.height, msg.width)
