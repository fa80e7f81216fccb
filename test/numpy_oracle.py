"""The NumPy per-frame path, kept as the test oracle of the deploy graph (``inference/deploy_graph.py``).

The node and ``bag-eval`` run one production path, the deploy graph; this module computes the same
outputs the way the package did before it (NumPy and OpenCV on the CPU, one step at a time), so the
parity tests can check every output of the graph against an independent implementation, and
``benchmarks/node_overhead.py`` can time the old path beside the new one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from mtl_perception.colorize import colorize_depth, colorize_labels, rgb_to_bgr
from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.processing import Transform, preprocess, to_rgb

NO_LABEL = 255


@dataclass
class Predictions:
    """Per-pixel outputs of one frame; a field is None when the model lacks that task."""

    depth: np.ndarray | None = None  # float32 (H, W), metres
    labels: np.ndarray | None = None  # uint8 (H, W), class ids (argmax)
    confidence: np.ndarray | None = None  # float32 (H, W), softmax probability of the chosen class
    normals: np.ndarray | None = None  # float32 (H, W, 3), unit vectors, camera optical frame


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


def postprocess(outputs: Mapping[str, np.ndarray], meta: ModelMetadata, transform: Transform, out_size: str = "input",
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


def clip_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 depth with NaN outside [lo, hi] and wherever it is not finite and positive."""
    out = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0) & (out >= lo) & (out <= hi))] = np.nan
    return out


def backproject(depth: np.ndarray, k: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (float64, strided grid) of every pixel: X = (u - cx - skew y') z / fx, Y = (v - cy) z / fy."""
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


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 0x00RRGGBB (reinterpreted as float32 in the message)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def point_buffers(depth: np.ndarray, k: np.ndarray, rgb: np.ndarray | None = None, labels: np.ndarray | None = None,
                  stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The deploy graph's (points_xyz, points_extra) computed in NumPy: NaN x, y, z where depth is not a positive number."""
    x, y, z = backproject(depth, k, stride)
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    xyz[~(np.isfinite(z) & (z > 0))] = np.nan
    extra = np.zeros(z.shape + (8,), dtype=np.uint8)
    if rgb is not None:
        extra[..., :3] = rgb[::stride, ::stride, ::-1]  # B, G, R, 0: the little-endian bytes of 0x00RRGGBB
    extra[..., 4] = NO_LABEL if labels is None else np.clip(labels[::stride, ::stride], 0, NO_LABEL)
    return xyz, extra


def depth_to_pointcloud(depth: np.ndarray, k: np.ndarray, rgb: np.ndarray | None = None, labels: np.ndarray | None = None,
                        stride: int = 1, header: Any = None, organized: bool = False) -> Any:
    """A PointCloud2 of a depth image through the node's message writer (``ros.pointcloud.points_message``), as rclpy reads it."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from mtl_perception.ros.pointcloud import points_message

    xyz, extra = point_buffers(depth, k, rgb, labels, stride)
    return deserialize_message(points_message(xyz, extra, header if header is not None else Header(), organized), PointCloud2)


def oracle_outputs(infer: Any, meta: ModelMetadata, pixels: np.ndarray, encoding: str, outputs: Sequence[str], *,
                   resize_mode: str = "letterbox", out_size: str = "input", depth_range: tuple[float, float] | None = None,
                   palette_rgb: np.ndarray | None = None, overlay_alpha: float = 0.5, k_at_output: np.ndarray | None = None,
                   camera_focal: tuple[float, float] | None = None, points_stride: int = 4) -> dict[str, np.ndarray]:
    """What the deploy graph returns for the same frame and settings, computed step by step in NumPy.

    ``camera_focal`` is (fx, fy) of the camera at the frame's size (depth follows it as the metadata
    asks); ``k_at_output`` its 3x3 intrinsics at the output size (for the points).
    """
    wanted = {name for output in outputs for name in (("points_xyz", "points_extra") if output == "points" else (output,))}
    need_semantic = bool(wanted & {"labels", "confidence", "semantic_color", "semantic_overlay"}) or ("points_xyz" in wanted and "semantic" in meta.tasks)
    need_depth = bool(wanted & {"depth", "depth_color", "points_xyz"})
    tasks = {t for t, needed in (("depth", need_depth), ("semantic", need_semantic), ("normals", "normals" in wanted)) if needed}
    rgb = to_rgb(pixels, encoding)
    batch, transform = preprocess(rgb, meta, resize_mode)
    predictions = postprocess(infer(batch), meta, transform, out_size, tasks=tasks, confidence="confidence" in wanted)
    size = (transform.source_height, transform.source_width) if out_size == "input" else (transform.content_height, transform.content_width)
    low, high = depth_range or (meta.depth_min, meta.depth_max)
    result: dict[str, np.ndarray] = {}
    depth = None
    if predictions.depth is not None:
        scaled = predictions.depth
        if camera_focal is not None:
            scaled = rescale_depth_for_camera(scaled, transform.focal_at_model_input(*camera_focal), meta)
        depth = clip_depth(scaled, low, high)
        result["depth"] = depth
        if "depth_color" in wanted:
            result["depth_color"] = rgb_to_bgr(colorize_depth(depth, low, high))
    colours = None
    if predictions.labels is not None:
        result["labels"] = predictions.labels
        if predictions.confidence is not None:
            result["confidence"] = predictions.confidence
        colours = colorize_labels(predictions.labels, palette_rgb)
        result["semantic_color"] = rgb_to_bgr(colours)
        if "semantic_overlay" in wanted:
            view = rgb.astype(np.float32) if out_size == "input" else cv2.resize(rgb.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            blended = np.round(view * np.float32(1.0 - overlay_alpha) + colours.astype(np.float32) * np.float32(overlay_alpha))
            result["semantic_overlay"] = rgb_to_bgr(np.clip(blended, 0, 255).astype(np.uint8))
    if predictions.normals is not None:
        result["normals"] = predictions.normals
    if depth is not None and k_at_output is not None and "points_xyz" in wanted:
        x, y, z = backproject(depth, k_at_output, points_stride)
        result["points_xyz"] = np.stack([x, y, z], axis=-1).astype(np.float32)
        colour = result["semantic_color"] if colours is not None else rgb_to_bgr(rgb)
        extra = np.zeros(z.shape + (8,), dtype=np.uint8)
        extra[..., :3] = colour[::points_stride, ::points_stride]
        extra[..., 4] = predictions.labels[::points_stride, ::points_stride] if predictions.labels is not None else 255
        result["points_extra"] = extra
    return {name: value for name, value in result.items() if name in wanted}
