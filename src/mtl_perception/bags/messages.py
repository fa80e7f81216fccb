"""NumPy arrays <-> ``rosbags`` message objects (Image, CompressedImage, CameraInfo, String).

Decoding reuses the node's codec (``inference.image_codec``): it reads only ``encoding``, ``height``,
``width``, ``step``, ``is_bigendian``, ``data`` (and ``format`` for compressed images), which
``rosbags`` messages have too, so bags and live topics decode through the same checked code.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Sequence

import cv2
import numpy as np

from mtl_perception.bags.conventions import COMPRESSED_TYPE, FRAME_ID
from mtl_perception.bags.io import typestore
from mtl_perception.colorize import class_table_json
from mtl_perception.inference.image_codec import compressed_msg_to_array, encoding_layout, image_msg_to_array

COMPRESSED_FORMATS = ("jpeg", "png")


def _types() -> dict[str, Any]:
    return typestore().types


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """A std_msgs/Header with the given stamp (ns) and frame id."""
    types = _types()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """A sensor_msgs/Image holding ``pixels`` (tightly packed, native byte order) in ``encoding``."""
    dtype, channels = encoding_layout(encoding)
    pixels = np.asarray(pixels)
    expected = (pixels.shape[0], pixels.shape[1]) if channels == 1 else (pixels.shape[0], pixels.shape[1], channels)
    if pixels.ndim not in (2, 3) or pixels.shape != expected or (pixels.ndim == 3 and channels == 1):
        raise ValueError(f"array of shape {pixels.shape} does not fit encoding {encoding} ({channels} channel(s))")
    if pixels.dtype != dtype:
        raise ValueError(f"array dtype {pixels.dtype} does not fit encoding {encoding} (needs {dtype})")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    data = np.frombuffer(np.ascontiguousarray(pixels).tobytes(), dtype=np.uint8)
    return _types()["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=1 if sys.byteorder == "big" else 0, step=width * channels * dtype.itemsize, data=data,
    )


def compressed_message(rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str = FRAME_ID, jpeg_quality: int = 95) -> Any:
    """A sensor_msgs/CompressedImage of an RGB uint8 image, encoded as ``jpeg`` or ``png``."""
    if fmt not in COMPRESSED_FORMATS:
        raise ValueError(f"unknown compressed format '{fmt}'; choose one of {list(COMPRESSED_FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {fmt} image of shape {rgb.shape}")
    # image_transport's format string: "<original encoding>; <codec> compressed <codec encoding>"
    return _types()[COMPRESSED_TYPE](header=header(stamp_ns, frame_id), format=f"rgb8; {fmt} compressed bgr8",
                                      data=np.asarray(encoded, dtype=np.uint8).reshape(-1))


def camera_info_message(K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """A sensor_msgs/CameraInfo of an undistorted pinhole camera with intrinsics ``K``."""
    types = _types()
    k = np.asarray(K, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4), dtype=np.float64)
    p[:, :3] = k
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width), distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64), k=k.reshape(-1), r=np.eye(3, dtype=np.float64).reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def string_message(text: str) -> Any:
    """A std_msgs/String."""
    return _types()["std_msgs/msg/String"](data=text)


def decode_image(message: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of an Image or CompressedImage message (ImageDecodeError when malformed)."""
    if msgtype == COMPRESSED_TYPE:
        return compressed_msg_to_array(message)
    return image_msg_to_array(message), str(message.encoding)


def class_table(class_names: Sequence[str], palette: Sequence[Sequence[int]], ignore_index: int, model_sha256: str = "") -> str:
    """The JSON class table in the layout the node publishes on ``semantic/classes``."""
    return class_table_json(list(class_names), np.asarray(palette, dtype=np.uint8), int(ignore_index), model_sha256)


def parse_class_table(text: str, source: str) -> tuple[list[str], list[list[int]], int]:
    """(class names, RGB palette, ignore id) from a class-table JSON; ValueError naming ``source``."""
    try:
        table = json.loads(text)
        classes = sorted(table["classes"], key=lambda c: int(c["id"]))
        names = [str(c["name"]) for c in classes]
        palette = [[int(v) for v in c["color"]] for c in classes]
        if [int(c["id"]) for c in classes] != list(range(len(classes))) or not classes:
            raise ValueError("class ids must run 0..K-1")
        return names, palette, int(table.get("ignore_index", 255))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"class table on {source} is not valid ({exc}); expected JSON "
                         '{"classes": [{"id": 0, "name": ..., "color": [r, g, b]}, ...], "ignore_index": 255}') from None
