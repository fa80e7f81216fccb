"""INT8 calibration data: camera frames from an image folder or a rosbag2, preprocessed in batches.

The explicit Q/DQ INT8 file (``precision.py``) is calibrated on these frames with ONNX Runtime on the
CPU, before any TensorRT build: a bad source is an error here, never a swallowed exception inside a
TensorRT callback. Frames go through the same ``preprocess`` as inference, with the resize mode the
node uses (letterbox by default), so calibration sees exactly the deployed input distribution.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.processing import ResizeMode, preprocess, to_rgb
from mtl_perception.paths import cache_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class CalibrationDataError(ValueError):
    """The calibration source holds no usable images."""


def iter_folder_images(folder: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of the image files under ``folder`` (recursive, sorted by path)."""
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationDataError(f"calibration folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    produced = 0
    for path in files:
        if limit is not None and produced >= limit:
            return
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR; grayscale files are replicated
        if image is None:
            continue  # unreadable file: skipped, the count check below reports an empty source
        produced += 1
        yield np.ascontiguousarray(image[:, :, ::-1])
    if produced == 0:
        raise CalibrationDataError(f"none of the {len(files)} image files under {root} could be decoded")


def decode_image_message(msg: object, msgtype: str) -> np.ndarray:
    """RGB uint8 frame of a sensor_msgs Image or CompressedImage (row padding and endianness handled)."""
    if msgtype.endswith("CompressedImage"):
        image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise CalibrationDataError(f"CompressedImage ({msg.format}) could not be decoded")
        return np.ascontiguousarray(image[:, :, ::-1])
    channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "mono16": 1, "16UC1": 1}
    if msg.encoding not in channels:
        raise CalibrationDataError(f"Image encoding '{msg.encoding}' is not supported for calibration; supported: {sorted(channels)}")
    dtype = np.dtype(np.uint16 if msg.encoding in ("mono16", "16UC1") else np.uint8)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels[msg.encoding] * dtype.itemsize
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if msg.step < row_bytes or data.size < msg.step * msg.height:
        raise CalibrationDataError(f"Image {msg.width}x{msg.height} {msg.encoding}: step {msg.step} / data {data.size} bytes too small")
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    shape = (msg.height, msg.width) if channels[msg.encoding] == 1 else (msg.height, msg.width, channels[msg.encoding])
    return to_rgb(pixels.reshape(shape), msg.encoding)


def iter_bag_images(bag: str | Path, topic: str | None = None, limit: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an image topic in a rosbag2 (sqlite3 or mcap); the only image topic when ``topic`` is None."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(bag)
    if not path.exists():
        raise CalibrationDataError(f"bag not found: {path}")
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        image_topics = {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
        if topic is None:
            if len(image_topics) != 1:
                raise CalibrationDataError(f"bag {path} has image topics {sorted(image_topics)}; name one with --calib-topic")
            topic = next(iter(image_topics))
        if topic not in image_topics:
            raise CalibrationDataError(f"topic '{topic}' is not an image topic of {path}; image topics: {sorted(image_topics)}")
        connections = [c for c in reader.connections if c.topic == topic]
        for count, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
            if limit is not None and count >= limit:
                return
            yield decode_image_message(reader.deserialize(raw, connection.msgtype), connection.msgtype)


def iter_calibration_images(source: str | Path, topic: str | None = None, limit: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a folder of images, or of a bag (a .db3/.mcap file or a bag directory with metadata.yaml)."""
    path = Path(source)
    is_bag = path.suffix in (".db3", ".mcap") or (path.is_dir() and (path / "metadata.yaml").is_file())
    return iter_bag_images(path, topic, limit) if is_bag else iter_folder_images(path, limit)


def calibration_batches(images: Iterable[np.ndarray], meta: ModelMetadata, batch_size: int = 1, mode: ResizeMode = "letterbox") -> Iterator[np.ndarray]:
    """Preprocessed float32 batches (batch_size, 3, H, W), fitted as the node fits frames; a last incomplete batch is dropped."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[np.ndarray] = []
    for image in images:
        pending.append(preprocess(image, meta, mode)[0])
        if len(pending) == batch_size:
            yield np.concatenate(pending, axis=0)
            pending = []


class CalibrationCacheFile:
    """A TensorRT implicit-calibration table (TensorRT <= 10 calibrators), keyed by the ONNX file's hash.

    The build path no longer calibrates inside TensorRT (the Q/DQ file carries its scales); this stays for
    reading tables that earlier engine caches hold, so it lives beside the engines (``engines/`` of the cache root,
    ``paths.cache_dir``). A table is only valid for the graph it was measured on,
    and only read back when its bytes match the content hash written beside it (``fileio``): a damaged table
    is reported, removed, and read as none, so the calibrator measures it again.
    """

    def __init__(self, cache_root: str | Path | None, onnx_sha256: str) -> None:
        self.path = cache_dir("engines", cache_root) / f"calibration-{onnx_sha256[:16]}.cache"

    def read(self) -> bytes | None:
        from mtl_perception.fileio import sound_cache_file

        if not self.path.is_file() or not sound_cache_file(self.path, "removed; calibrating again"):
            return None
        return self.path.read_bytes() or None

    def write(self, table: bytes) -> None:
        from mtl_perception.fileio import cache_lock, write_cache_file

        with cache_lock(self.path):
            write_cache_file(self.path, bytes(table))
