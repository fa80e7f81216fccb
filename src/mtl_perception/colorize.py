"""Turn depth, class ids and normals into uint8 colour images (shared by evaluation, reports and the ROS node).

Channel order: every function takes and returns **RGB** (H, W, 3) uint8 images. ROS ``bgr8`` publishers
and ``cv2.imwrite`` want BGR: convert with :func:`rgb_to_bgr`. Invalid pixels (NaN/inf/non-positive depth,
ignore or out-of-range class ids, zero or non-finite normals) come out black.

All mappings are look-up tables applied by OpenCV (``cv2.applyColorMap`` with a user table), so one call
costs a few milliseconds at 640x480.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Sequence

import cv2
import numpy as np

_COLORMAPS = {
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "jet": cv2.COLORMAP_JET,
    "bone": cv2.COLORMAP_BONE,
}


@functools.lru_cache(maxsize=None)
def _depth_lut(cmap: str) -> np.ndarray:
    """(256, 1, 3) RGB table: entry 0 is black (invalid), entries 1..255 span the colour map."""
    if cmap not in _COLORMAPS:
        raise ValueError(f"unknown depth colour map '{cmap}'; choose one of {sorted(_COLORMAPS)}")
    ramp = np.round(np.linspace(0, 255, 255)).astype(np.uint8).reshape(-1, 1)
    colours_bgr = cv2.applyColorMap(ramp, _COLORMAPS[cmap])  # (255, 1, 3) BGR
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    lut[1:] = colours_bgr[:, :, ::-1]
    lut.setflags(write=False)
    return lut


def depth_lut_bgr(cmap: str = "turbo") -> np.ndarray:
    """(256, 3) BGR table of ``colorize_depth``: entry 0 black (no depth), 1..255 the colour map, near to far."""
    return np.ascontiguousarray(_depth_lut(cmap)[:, 0, ::-1])


def _squeeze_plane(array: np.ndarray, what: str) -> np.ndarray:
    """(H, W), (1, H, W) or (H, W, 1) -> (H, W)."""
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise ValueError(f"{what} must be (H, W), (1, H, W) or (H, W, 1), got shape {array.shape}")
    return array


def colorize_depth(depth: Any, min_depth: float, max_depth: float, cmap: str = "turbo") -> np.ndarray:
    """Depth in metres -> RGB uint8 (H, W, 3); near = first colour of ``cmap``, far = last.

    Values outside [min_depth, max_depth] saturate at the ends; NaN, inf and values <= 0 are black.
    """
    if not max_depth > min_depth:
        raise ValueError(f"need min_depth < max_depth, got {min_depth} and {max_depth}")
    plane = _squeeze_plane(np.asarray(depth), "depth")
    lut = _depth_lut(cmap)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(plane) & (plane > 0)
        scaled = np.subtract(plane, min_depth, dtype=np.float32)
        scaled *= 254.0 / (max_depth - min_depth)
        np.clip(scaled, 0.0, 254.0, out=scaled)
    scaled += 1.5  # table entries 1..255, rounded to nearest
    scaled[~valid] = 0.0
    index = scaled.astype(np.uint8)
    return cv2.applyColorMap(index, lut)


def validate_palette(palette: Any) -> np.ndarray:
    """Palette as a (K, 3) uint8 RGB array; raise ValueError on a bad shape or values outside 0..255."""
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"palette must be a non-empty list of [R, G, B] triples, got shape {array.shape}")
    if array.min() < 0 or array.max() > 255:
        raise ValueError("palette colours must lie in 0..255")
    return array.astype(np.uint8)


def colorize_labels(labels: Any, palette: Any) -> np.ndarray:
    """Class ids (H, W) -> RGB uint8 (H, W, 3) with ``palette[id]``; ids outside [0, K) (e.g. 255) are black."""
    colours = validate_palette(palette)
    ids = _squeeze_plane(np.asarray(labels), "labels")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {ids.dtype}")
    count = colours.shape[0]
    if count < 256:  # fast path: 8-bit ids through a 256-entry table, black beyond the palette
        lut = np.zeros((256, 1, 3), dtype=np.uint8)
        lut[:count, 0] = colours
        if ids.dtype != np.uint8:
            ids = np.where((ids >= 0) & (ids < count), ids, 255).astype(np.uint8)
        return cv2.applyColorMap(np.ascontiguousarray(ids), lut)
    table = np.concatenate([colours, np.zeros((1, 3), dtype=np.uint8)])
    return table[np.where((ids >= 0) & (ids < count), ids, count)]


def overlay(rgb: Any, label_colors: Any, alpha: float = 0.5, valid: Any | None = None) -> np.ndarray:
    """Blend ``(1 - alpha) * rgb + alpha * label_colors`` (both RGB uint8 (H, W, 3)).

    Where the optional boolean ``valid`` mask is False (e.g. ignore ids), the image shows unblended.
    """
    image = np.asarray(rgb)
    colours = np.asarray(label_colors)
    if image.shape != colours.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay needs two (H, W, 3) images of the same shape, got {image.shape} and {colours.shape}")
    if image.dtype != np.uint8 or colours.dtype != np.uint8:
        raise ValueError(f"overlay needs uint8 images, got {image.dtype} and {colours.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    blended = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    if valid is not None:
        mask = np.asarray(valid, dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"valid mask shape {mask.shape} != image size {image.shape[:2]}")
        blended[~mask] = image[~mask]
    return blended


def colorize_normals(normals: Any) -> np.ndarray:
    """Unit normals -> RGB uint8 (H, W, 3) as round((n + 1) / 2 * 255): x -> R, y -> G, z -> B.

    Accepts (H, W, 3) or (3, H, W) (a last axis of size 3 is taken as channels). Zero-length or
    non-finite vectors are black.
    """
    array = np.asarray(normals)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"normals must be (H, W, 3) or (3, H, W), got shape {array.shape}")
    if array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    vectors = array.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        squared_norm = np.einsum("ijk,ijk->ij", vectors, vectors)
        valid = (squared_norm > 0) & (squared_norm < np.inf)  # False for NaN, inf and zero vectors
        scaled = vectors * np.float32(127.5)
        scaled += np.float32(128.0)  # (n + 1) * 127.5, plus 0.5 to round on the cast below
        np.clip(scaled, 0.0, 255.0, out=scaled)
    scaled[~valid] = 0.0
    return scaled.astype(np.uint8)


def rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    """Swap the first and last channel (RGB <-> BGR) into a new contiguous array."""
    return np.ascontiguousarray(image[..., ::-1])


def default_palette(num_classes: int) -> np.ndarray:
    """Deterministic, well-separated RGB colours (K, 3) uint8 for when a dataset supplies none."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    hues = (np.arange(num_classes) * 0.618033988749895) % 1.0  # golden-ratio hue steps
    value = np.where(np.arange(num_classes) % 2 == 0, 230, 160)
    hsv = np.stack([np.round(hues * 179), np.full(num_classes, 200), value], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv.reshape(1, -1, 3), cv2.COLOR_HSV2RGB).reshape(-1, 3)


def palette_from_sequence(palette: Sequence[Sequence[int]] | None, num_classes: int) -> np.ndarray:
    """The given palette validated for ``num_classes`` classes, or :func:`default_palette` when None."""
    if palette is None:
        return default_palette(num_classes)
    colours = validate_palette(palette)
    if colours.shape[0] < num_classes:
        raise ValueError(f"palette has {colours.shape[0]} colours for {num_classes} classes")
    return colours


def class_table_json(class_names: list[str], palette: np.ndarray, ignore_index: int, model_sha256: str) -> str:
    """The class table published on ``semantic/classes``: JSON with names, RGB colours and ids."""
    return json.dumps(
        {
            "classes": [{"id": i, "name": name, "color": [int(c) for c in palette[i]]} for i, name in enumerate(class_names)],
            "ignore_index": ignore_index,
            "encoding": "semantic (mono8) pixel value = class id",
            "model_sha256": model_sha256,
        }
    )
