"""The raw frame record shared by the renderer, the folder format and the dataset loaders."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One camera frame with its ground truth, as NumPy arrays at the stored resolution.

    rgb: (H, W, 3) uint8, RGB order.
    depth: (H, W) float32 z-depth in metres along the optical axis; 0 marks invalid pixels.
    labels: (H, W) uint8 class ids; ``tasks.IGNORE_INDEX`` (255) marks unlabelled pixels.
    normals: (H, W, 3) float32 unit vectors in the camera optical frame (REP-103: x right,
        y down, z forward), facing the camera; all-zero vectors mark invalid pixels.
    K: (3, 3) float64 pinhole intrinsics at this resolution (pixel centres at integer coordinates).
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    normals: np.ndarray
    K: np.ndarray

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])
