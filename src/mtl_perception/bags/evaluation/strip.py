"""The picture strip of a bag evaluation: input | semantic overlay | depth colour map of a few frames."""
from __future__ import annotations

import cv2
import numpy as np

from mtl_perception.bags.evaluation.ground_truth import fit_to
from mtl_perception.colorize import colorize_depth, colorize_labels, overlay
from mtl_perception.evaluation.contact_sheet import Panel
from mtl_perception.tasks import DEPTH, SEMANTIC

STRIP_WIDTH = 320  # pixels per strip tile (frames are shrunk to this width)


def strip_row(rgb: np.ndarray, maps: dict[str, np.ndarray], palette: np.ndarray, depth_range: tuple[float, float],
              stamp_ns: int) -> list[Panel]:
    """input | semantic overlay | depth colour map of one frame, shrunk to the strip width."""
    scale = min(1.0, STRIP_WIDTH / rgb.shape[1])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    row: list[Panel] = [(f"input t={stamp_ns / 1e9:.2f}s", small)]
    if SEMANTIC in maps:
        labels = fit_to(maps[SEMANTIC], small.shape[:2])
        tinted = overlay(small, colorize_labels(labels, palette), 0.5, valid=labels < len(palette))
        row.append(("semantic overlay", tinted))
    if DEPTH in maps:
        row.append(("depth", colorize_depth(fit_to(maps[DEPTH], small.shape[:2]), *depth_range)))
    return row


def strip_indices(count: int, wanted: int) -> set[int]:
    """Frame positions shown in the picture strip: ``wanted`` spread evenly over ``count`` frames."""
    if count == 0 or wanted <= 0:
        return set()
    return set(np.unique(np.linspace(0, count - 1, wanted).round().astype(int)).tolist())
