"""Pre- and post-processing shared by every backend, the node and the offline tools (pure NumPy/OpenCV).

Preprocessing maps a camera image to the network input the model file describes; the ``Transform``
it returns records how (scale and letterbox padding), so postprocessing can map every output back.

Resizing choices:
- image in: bilinear (``cv2.INTER_LINEAR``); letterbox padding is filled with the normalisation mean,
  i.e. zeros after normalisation, the value the network sees least surprisingly.
- semantic out: the logits are resized bilinearly, then argmax and softmax give labels and confidence
  (smoother, better-placed class boundaries than nearest-resizing the label map).
- depth and normals out: bilinear. The network already produces them by bilinear upsampling from stride
  4, so nearest resizing would add blockiness without removing any mixing at object edges. Normals are
  re-normalised to unit length after resizing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import cv2
import numpy as np

from mtl_perception.inference.metadata import ModelMetadata

ResizeMode = Literal["stretch", "letterbox"]
OutSize = Literal["input", "model"]

# Encodings ``to_rgb`` converts (ROS sensor_msgs/Image names).
SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1")


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


@dataclass
class Predictions:
    """Per-pixel outputs of one frame; a field is None when the model lacks that task."""

    depth: np.ndarray | None = None  # float32 (H, W), metres
    labels: np.ndarray | None = None  # uint8 (H, W), class ids (argmax)
    confidence: np.ndarray | None = None  # float32 (H, W), softmax probability of the chosen class
    normals: np.ndarray | None = None  # float32 (H, W, 3), unit vectors, camera optical frame


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an image in a ROS encoding to contiguous uint8 RGB (H, W, 3).

    mono images are replicated to three channels; 16-bit mono keeps its top 8 bits; alpha is dropped.
    """
    enc = encoding.strip()
    if enc not in SUPPORTED_ENCODINGS:
        raise ValueError(f"unsupported image encoding '{encoding}'; supported: {list(SUPPORTED_ENCODINGS)}")
    image = np.asarray(image)
    if enc in ("mono16", "16UC1"):
        if image.dtype != np.uint16 or image.ndim != 2:
            raise ValueError(f"{enc} image must be uint16 (H, W), got {image.dtype} {image.shape}")
        image = (image >> 8).astype(np.uint8)
        enc = "mono8"
    if image.dtype != np.uint8:
        raise ValueError(f"{enc} image must be uint8, got {image.dtype}")
    channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1}[enc]
    if channels == 1:
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim != 2:
            raise ValueError(f"{enc} image must have shape (H, W), got {image.shape}")
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"{enc} image must have shape (H, W, {channels}), got {image.shape}")
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.ascontiguousarray(image[:, :, :3])


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
    if (transform.content_height, transform.content_width) == image_rgb.shape[:2]:
        content = image_rgb
    else:
        content = cv2.resize(image_rgb, (transform.content_width, transform.content_height), interpolation=cv2.INTER_LINEAR)
    if meta.channel_order == "bgr":
        content = content[:, :, ::-1]
    elif meta.channel_order != "rgb":
        raise ValueError(f"model metadata names channel order '{meta.channel_order}'; supported: rgb, bgr")
    mean = np.asarray(meta.mean, dtype=np.float32)  # listed in the model's channel order
    std = np.asarray(meta.std, dtype=np.float32)
    normalised = (content.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std
    batch = np.zeros((1, 3, meta.input_height, meta.input_width), dtype=np.float32)
    batch[0, :, transform.pad_top : transform.pad_top + transform.content_height, transform.pad_left : transform.pad_left + transform.content_width] = normalised.transpose(2, 0, 1)
    return batch, transform


def _crop_content(chw: np.ndarray, transform: Transform) -> np.ndarray:
    """Drop letterbox padding from a (C, h, w) map; returns (h', w', C)."""
    if chw.shape[-2:] != (transform.model_height, transform.model_width):
        raise ValueError(f"output map is {chw.shape[-2]}x{chw.shape[-1]}, expected the model size {transform.model_height}x{transform.model_width}")
    top, left = transform.pad_top, transform.pad_left
    return np.ascontiguousarray(chw[:, top : top + transform.content_height, left : left + transform.content_width].transpose(1, 2, 0))


def _resize_hwc(hwc: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w, C) float map to (H, W, C), any channel count."""
    height, width = size
    if hwc.shape[:2] == (height, width):
        return hwc
    # OpenCV arrays hold at most 512 channels (CV_CN_MAX): resize wider maps in chunks.
    step = 256
    chunks = [cv2.resize(hwc[:, :, i : i + step], (width, height), interpolation=cv2.INTER_LINEAR) for i in range(0, hwc.shape[2], step)]
    chunks = [c[:, :, None] if c.ndim == 2 else c for c in chunks]
    return np.concatenate(chunks, axis=2)


def _frame(outputs: Mapping[str, np.ndarray], task: str, index: int) -> np.ndarray:
    array = np.asarray(outputs[task], dtype=np.float32)
    if array.ndim == 4:
        array = array[index]
    if array.ndim != 3:
        raise ValueError(f"output '{task}' must be (N, C, H, W) or (C, H, W), got shape {array.shape}")
    return array


def postprocess(outputs: Mapping[str, np.ndarray], meta: ModelMetadata, transform: Transform, out_size: OutSize = "input",
                index: int = 0, tasks: Sequence[str] | None = None, confidence: bool = True) -> Predictions:
    """Backend outputs (keyed by task) -> per-pixel predictions of frame ``index``.

    out_size "input": the source image's resolution; "model": the network resolution with letterbox
    padding removed (content_height x content_width; the full model size under ``stretch``).
    ``tasks`` limits the work to a subset of the model's tasks (default: all); ``confidence=False``
    skips the softmax confidence map.
    """
    wanted = list(meta.tasks) if tasks is None else [t for t in meta.tasks if t in tasks]
    if out_size == "input":
        size = (transform.source_height, transform.source_width)
    elif out_size == "model":
        size = (transform.content_height, transform.content_width)
    else:
        raise ValueError(f"unknown out_size '{out_size}'; valid: ['input', 'model']")
    missing = [t for t in wanted if t not in outputs]
    if missing:
        raise ValueError(f"backend outputs lack task(s) {missing} that the model metadata lists (got {sorted(outputs)})")
    result = Predictions()
    if "depth" in wanted:
        depth = _resize_hwc(_crop_content(_frame(outputs, "depth", index), transform), size)
        result.depth = np.ascontiguousarray(depth.reshape(size), dtype=np.float32)
    if "semantic" in wanted:
        logits = _resize_hwc(_crop_content(_frame(outputs, "semantic", index), transform), size)
        if confidence:
            result.labels, result.confidence = labels_and_confidence(logits)
        else:
            result.labels = logits.argmax(axis=2).astype(np.uint8)
    if "normals" in wanted:
        normals = _resize_hwc(_crop_content(_frame(outputs, "normals", index), transform), size)
        result.normals = normalise_vectors(normals)
    return result


def labels_and_confidence(logits_hwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax class (uint8) and its softmax probability (float32) from (H, W, C) logits."""
    if logits_hwc.shape[2] > 256:
        raise ValueError(f"{logits_hwc.shape[2]} classes do not fit uint8 labels")
    labels = np.argmax(logits_hwc, axis=2)
    top = np.take_along_axis(logits_hwc, labels[:, :, None], axis=2)
    # softmax probability of the top class = 1 / sum(exp(l - l_max)), stable for any logit scale
    confidence = 1.0 / np.sum(np.exp(logits_hwc - top), axis=2)
    return labels.astype(np.uint8), confidence.astype(np.float32)


def normalise_vectors(vectors_hwc: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Unit-length vectors along the last axis (zero vectors stay zero)."""
    norm = np.linalg.norm(vectors_hwc, axis=-1, keepdims=True)
    return (vectors_hwc / np.maximum(norm, eps)).astype(np.float32)


def rescale_depth_for_camera(depth: np.ndarray, camera_focal_at_model_input: float, meta: ModelMetadata) -> np.ndarray:
    """Metric depth for a camera whose focal length differs from the training camera's.

    An object of size S at depth Z spans f*S/Z pixels. The network, trained with focal length
    f_train, reads that span as depth f_train*S/span, so the true depth is the prediction times
    f_cam / f_train (both at the network input size: see ``Transform.focal_at_model_input``).
    Nothing changes when the metadata has no training focal length or asks for no scaling.
    """
    if meta.depth_scaling == "none" or meta.focal_length_px <= 0:
        return depth
    if meta.depth_scaling != "focal":
        raise ValueError(f"model metadata asks for depth scaling '{meta.depth_scaling}'; supported: focal, none")
    if not np.isfinite(camera_focal_at_model_input) or camera_focal_at_model_input <= 0:
        raise ValueError(f"camera focal length must be a positive number of pixels, got {camera_focal_at_model_input}")
    factor = np.float32(camera_focal_at_model_input / meta.focal_length_px)
    return (np.asarray(depth, dtype=np.float32) * factor).astype(np.float32)
