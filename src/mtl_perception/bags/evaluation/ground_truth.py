"""Decoding ground-truth and recorded-prediction images, and fitting predictions to the ground truth's size."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from mtl_perception.bags import messages
from mtl_perception.bags.conventions import IMAGE_TYPE
from mtl_perception.inference.image_codec import ImageDecodeError
from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC


def decode_depth(message: Any) -> np.ndarray:
    """Depth image -> float32 metres with NaN where invalid (32FC1 metres, 16UC1/mono16 millimetres, 0 = invalid)."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding == "32FC1":
        return pixels.astype(np.float32, copy=False)
    if encoding in ("16UC1", "mono16"):
        depth = pixels.astype(np.float32) * np.float32(0.001)
        depth[pixels == 0] = np.nan
        return depth
    raise ImageDecodeError(f"depth image has encoding '{encoding}'; expected 32FC1 (metres) or 16UC1 (millimetres)")


def decode_labels(message: Any) -> np.ndarray:
    """Label image (mono8/8UC1/16UC1 class ids) -> (H, W) integer ids."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding not in ("mono8", "8UC1", "16UC1", "mono16") or pixels.ndim != 2:
        raise ImageDecodeError(f"label image has encoding '{encoding}'; expected mono8 class ids")
    return pixels


def decode_normals(message: Any) -> np.ndarray:
    """Normals image (32FC3) -> float32 (H, W, 3)."""
    pixels, encoding = messages.decode_image(message, IMAGE_TYPE)
    if encoding != "32FC3":
        raise ImageDecodeError(f"normals image has encoding '{encoding}'; expected 32FC3 unit vectors")
    return pixels.astype(np.float32, copy=False)


DECODERS = {DEPTH: decode_depth, SEMANTIC: decode_labels, NORMALS: decode_normals}


def decode_maps(found: dict[str, Any]) -> dict[str, np.ndarray]:
    """task -> map decoded from ground-truth or prediction messages (depth 32FC1, semantic mono8, normals 32FC3)."""
    return {task: DECODERS[task](message) for task, message in found.items() if task in DECODERS}


def fit_to(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A prediction map at the ground truth's (height, width), by nearest-neighbour resizing."""
    if prediction.shape[:2] == size:
        return prediction
    return cv2.resize(prediction, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
