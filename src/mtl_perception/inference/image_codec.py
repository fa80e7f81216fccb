"""The package's own sensor_msgs image codec: messages <-> NumPy arrays, no cv_bridge.

Decoding honours row padding (``step``) and byte order (``is_bigendian``) and checks every size
before it allocates anything, so a malformed message is a clear ``ImageDecodeError``, never a crash
or silently wrong pixels. Arrays are (H, W) for one channel and (H, W, C) otherwise. Conversion of
camera pixels to 8-bit graph input or RGB is ``mtl_perception.inference.encodings`` (the one table of
encodings, including Bayer, YUV 4:2:2 and 16-bit colour).
"""
from __future__ import annotations

import array
import re
import sys
from typing import Any

import numpy as np

from mtl_perception.safeload import shorten

from mtl_perception.inference.encodings import FORMATS

DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageDecodeError(ValueError):
    """An image message cannot be turned into pixels; the message says what is wrong and how to fix it."""


# Named encodings (sensor_msgs/image_encodings.hpp): encoding -> (dtype, channels), from the package's one
# encoding table (inference/encodings.py: rgb/bgr/mono 8 and 16 bit, Bayer 8/16, yuv422 and yuv422_yuy2).
_NAMED: dict[str, tuple[str, int]] = {name: (fmt.dtype, fmt.channels) for name, fmt in FORMATS.items() if not name[:1].isdigit()}
# OpenCV-style encodings: <bits><U|S|F>C<channels>, e.g. 8UC3, 16UC1, 32FC1.
_CV_PATTERN = re.compile(r"^(8|16|32|64)([USF])C([1-4])$")
_CV_DTYPES = {("8", "U"): "u1", ("8", "S"): "i1", ("16", "U"): "u2", ("16", "S"): "i2", ("32", "S"): "i4", ("32", "F"): "f4", ("64", "F"): "f8"}

def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """(element dtype in native byte order, channel count) of an encoding; ImageDecodeError if unknown."""
    if encoding in _NAMED:
        code, channels = _NAMED[encoding]
        return np.dtype(code), channels
    match = _CV_PATTERN.match(encoding)
    if match and (match.group(1), match.group(2)) in _CV_DTYPES:
        return np.dtype(_CV_DTYPES[(match.group(1), match.group(2))]), int(match.group(3))
    shown = shorten(str(encoding), 40)  # one line: a 1 MB or multi-line encoding string is not echoed whole
    raise ImageDecodeError(
        f"unsupported image encoding '{shown}'; publish one of {sorted(_NAMED)} or an OpenCV type such as 8UC3, 16UC1, 32FC1"
    )


def _check_pixel_count(height: int, width: int, max_pixels: int | None) -> None:
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"zero-size image ({width}x{height}); check the camera driver's output")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError(
            f"image of {width}x{height} = {height * width} pixels exceeds the limit of {max_pixels} pixels; "
            "raise the input.max_pixels parameter or publish a smaller image"
        )


def image_msg_to_array(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS, copy: bool = True) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as a native-byte-order array: (H, W) or (H, W, C).

    ``copy=False`` returns a view of the message's buffer where it already is in native byte order
    (every 8-bit image: the node's per-frame path), else a new array.

    Raises ImageDecodeError for an unsupported encoding, a zero size, more than ``max_pixels`` pixels,
    a ``step`` shorter than one row, or ``data`` shorter than ``step * height``; all checked before
    any pixel buffer is allocated.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype, channels = encoding_layout(msg.encoding)
    _check_pixel_count(height, width, max_pixels)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is shorter than one row of {width} px x {channels} ch x {dtype.itemsize} B = {row_bytes} B "
            f"({msg.encoding}); set step to at least width * bytes per pixel"
        )
    data = msg.data
    size = len(data) * (data.itemsize if isinstance(data, array.array) else 1)
    if size < step * height:
        raise ImageDecodeError(
            f"image data has {size} B but step x height = {step} x {height} = {step * height} B; "
            "the message is truncated or its step/height are wrong"
        )
    if size > step * height:  # sensor_msgs/Image: len(data) == step * height; more means the header lies
        raise ImageDecodeError(
            f"image data has {size} B, more than step x height = {step} x {height} = {step * height} B; "
            "the width, height, step or encoding in the header do not describe the data: fix the publisher"
        )
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    pixels = rows.view(wire).reshape((height, width, channels) if channels > 1 else (height, width))
    if not copy and wire.isnative:
        return pixels
    return pixels.astype(dtype.newbyteorder("="), order="C", copy=True)


def _compressed_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from a PNG or JPEG header without decoding; None if not found.

    A JPEG stream without an end-of-image marker after its frame header is an ImageDecodeError (truncated).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers
                pos += 2
                continue
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: start of frame
                if pos + 9 > len(data):
                    return None
                if data.find(b"\xff\xd9", pos) < 0:  # libjpeg would fill the missing rows with grey
                    raise ImageDecodeError(f"JPEG data ({len(data)} B) has no end-of-image marker: the stream is truncated; check the camera's compressed transport")
                return "jpeg", int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
            pos += 2 + length
        return None
    return None


def compressed_msg_to_array(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to (pixels, encoding).

    The encoding is ``bgr8``, ``bgra8``, ``mono8`` or ``mono16`` (OpenCV's decoded channel order).
    The size in the file header is checked against ``max_pixels`` before decoding.
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressed format '{msg.format}' (compressedDepth) is a depth transport; subscribe the node to a colour or mono camera stream")
    data = bytes(msg.data)
    if not data:
        raise ImageDecodeError("compressed image has no data; check the camera's compressed transport")
    header = _compressed_size(data)
    if header is None:
        raise ImageDecodeError(
            f"compressed image (format '{msg.format}', {len(data)} B) is neither a readable PNG nor JPEG stream; "
            "the data is corrupt or uses another codec: publish JPEG or PNG"
        )
    kind, width, height = header
    _check_pixel_count(height, width, max_pixels)
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageDecodeError(f"{kind.upper()} data ({len(data)} B, {width}x{height} in its header) failed to decode; the stream is corrupt or truncated")
    if pixels.ndim == 2:
        encoding = "mono8" if pixels.dtype == np.uint8 else "mono16"
    elif pixels.shape[2] == 3:
        encoding = "bgr8" if pixels.dtype == np.uint8 else "bgr16"
    else:
        encoding = "bgra8" if pixels.dtype == np.uint8 else "bgra16"
    return pixels, encoding


_ENCODE_CHANNELS = {"32FC1": 1, "32FC3": 3, "mono8": 1, "bgr8": 3, "rgb8": 3, "mono16": 1, "16UC1": 1, "8UC1": 1, "8UC3": 3}


def array_to_image_msg(pixels: np.ndarray, encoding: str, header: Any = None) -> Any:
    """A sensor_msgs/Image holding ``pixels`` in ``encoding`` (tightly packed, native byte order)."""
    from sensor_msgs.msg import Image

    if encoding not in _ENCODE_CHANNELS:
        raise ValueError(f"cannot encode '{encoding}'; supported: {sorted(_ENCODE_CHANNELS)}")
    dtype, channels = encoding_layout(encoding)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 2 and channels != 1) or (pixels.ndim == 3 and pixels.shape[2] != channels):
        raise ValueError(f"array of shape {pixels.shape} does not fit encoding {encoding} ({channels} channel(s))")
    if pixels.dtype != dtype:
        raise ValueError(f"array dtype {pixels.dtype} does not fit encoding {encoding} (needs {dtype})")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if sys.byteorder == "big" else 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = byte_array(pixels)
    return msg


def byte_array(values: np.ndarray) -> array.array:
    """The bytes of ``values`` as the array.array('B') that uint8[] message fields hold (one copy)."""
    data = array.array("B")
    data.frombytes(memoryview(np.ascontiguousarray(values)).cast("B"))
    return data
