"""How a camera image maps to the network input (pure NumPy/OpenCV): the ``Transform`` and ``preprocess``.

The per-frame path of the node and ``bag-eval`` does all of this inside the deploy graph
(``inference/deploy_graph.py``), which reads its sizes from ``make_transform``; ``preprocess`` is the
same mapping in NumPy for the tools that feed the bare network (INT8 calibration, sample batches).

Resizing choices (the deploy graph makes the same ones):
- image in: bilinear with half-pixel centres on float pixels (``cv2.INTER_LINEAR``); letterbox padding is
  filled with the normalisation mean, i.e. zeros after normalisation, the value the network sees least
  surprisingly.
- semantic out: the logits are resized bilinearly, then argmax gives the labels (smoother, better-placed
  class boundaries than nearest-resizing the label map).
- depth and normals out: bilinear. The network already produces them by bilinear upsampling from stride
  4, so nearest resizing would add blockiness without removing any mixing at object edges. Normals are
  re-normalised to unit length after resizing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from mtl_perception.inference import encodings as _encodings
from mtl_perception.inference.metadata import ModelMetadata

ResizeMode = Literal["stretch", "letterbox"]

# Encodings ``to_rgb`` converts (ROS sensor_msgs/Image names): the table of ``inference/encodings.py``.
SUPPORTED_ENCODINGS = _encodings.SUPPORTED_ENCODINGS


@dataclass(frozen=True)
class Transform:
    """How a source image was mapped to the network input.

    A source pixel centre (x, y) lands at model coordinates ``(x + 0.5) * scale_x - 0.5 + pad_left``
    (same for y); the image occupies rows ``pad_top : pad_top + content_height`` and columns
    ``pad_left : pad_left + content_width`` of the model input.
    """

    source_height: int
    source_width: int
    model_height: int
    model_width: int
    scale_y: float  # content_height / source_height
    scale_x: float  # content_width / source_width
    pad_top: int
    pad_left: int
    content_height: int
    content_width: int
    mode: str

    @property
    def pad_bottom(self) -> int:
        return self.model_height - self.pad_top - self.content_height

    @property
    def pad_right(self) -> int:
        return self.model_width - self.pad_left - self.content_width

    def focal_at_model_input(self, fx: float, fy: float | None = None) -> float:
        """A camera focal length (pixels, source resolution) expressed at the network input.

        With ``fy`` the geometric mean of both scaled focal lengths is returned (they differ when
        ``stretch`` changes the aspect ratio).
        """
        if fy is None:
            return fx * self.scale_x
        return math.sqrt(fx * self.scale_x * fy * self.scale_y)


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an image in a ROS encoding to contiguous uint8 RGB (H, W, 3).

    The same conversions as the node's deploy-graph input (``inference/encodings.py``): mono is replicated to
    three channels, 16-bit is scaled by 255/65535, 8UC3 is BGR, Bayer and YUV 4:2:2 are converted by OpenCV,
    alpha is dropped.
    """
    return _encodings.to_rgb(image, encoding)


def make_transform(source_height: int, source_width: int, meta: ModelMetadata, mode: ResizeMode = "stretch") -> Transform:
    """The mapping from a source size to the model input size (no pixels touched)."""
    if source_height <= 0 or source_width <= 0:
        raise ValueError(f"image size must be positive, got {source_height}x{source_width}")
    mh, mw = meta.input_height, meta.input_width
    if mode == "stretch":
        return Transform(source_height, source_width, mh, mw, mh / source_height, mw / source_width, 0, 0, mh, mw, mode)
    if mode == "letterbox":
        scale = min(mh / source_height, mw / source_width)
        ch = min(mh, max(1, round(source_height * scale)))
        cw = min(mw, max(1, round(source_width * scale)))
        top, left = (mh - ch) // 2, (mw - cw) // 2
        return Transform(source_height, source_width, mh, mw, ch / source_height, cw / source_width, top, left, ch, cw, mode)
    raise ValueError(f"unknown resize mode '{mode}'; valid: ['letterbox', 'stretch']")


def preprocess(image_rgb: np.ndarray, meta: ModelMetadata, mode: ResizeMode = "stretch") -> tuple[np.ndarray, Transform]:
    """uint8 RGB (H, W, 3) -> normalised float32 batch (1, 3, h, w) in the model's channel order."""
    image_rgb = np.asarray(image_rgb)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"preprocess expects uint8 RGB (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}; convert with to_rgb()")
    transform = make_transform(image_rgb.shape[0], image_rgb.shape[1], meta, mode)
    pixels = image_rgb.astype(np.float32)
    if (transform.content_height, transform.content_width) == image_rgb.shape[:2]:
        content = pixels
    else:
        content = cv2.resize(pixels, (transform.content_width, transform.content_height), interpolation=cv2.INTER_LINEAR)
    if meta.channel_order == "bgr":
        content = content[:, :, ::-1]
    elif meta.channel_order != "rgb":
        raise ValueError(f"model metadata names channel order '{meta.channel_order}'; supported: rgb, bgr")
    mean = np.asarray(meta.mean, dtype=np.float32)  # listed in the model's channel order
    std = np.asarray(meta.std, dtype=np.float32)
    normalised = (content * np.float32(1.0 / 255.0) - mean) / std
    batch = np.zeros((1, 3, meta.input_height, meta.input_width), dtype=np.float32)
    batch[0, :, transform.pad_top : transform.pad_top + transform.content_height, transform.pad_left : transform.pad_left + transform.content_width] = normalised.transpose(2, 0, 1)
    return batch, transform
