"""A PNG contact sheet: one row per frame, ``input | <task> gt | <task> pred | ...``, each tile captioned.

A row is a list of ``(caption, image)`` panels, images RGB uint8 (H, W, 3) or grey (H, W).
:func:`sample_panels` builds such a row from one frame's raw ground truth and prediction.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from mtl_perception.colorize import colorize_depth, colorize_labels, colorize_normals, palette_from_sequence, rgb_to_bgr
from mtl_perception.metrics import to_numpy
from mtl_perception.fileio import atomic_write_bytes
from mtl_perception.tasks import ALL_TASKS, DEPTH, NORMALS, SEMANTIC

Panel = tuple[str, np.ndarray]

CAPTION_HEIGHT = 16  # pixels of the caption bar above each tile
GAP = 2  # pixels between tiles
BACKGROUND = 32  # grey level of the sheet background and caption bars


def image_to_rgb_uint8(image: Any) -> np.ndarray:
    """RGB (H, W, 3) uint8 from uint8 HWC, or float HWC/CHW with values in [0, 1]."""
    array = to_numpy(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"input image must be (H, W, 3) or (3, H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _depth_plane(array: Any) -> np.ndarray:
    return np.squeeze(to_numpy(array).astype(np.float32, copy=False))


def _label_plane(array: Any, is_prediction: bool) -> np.ndarray:
    values = to_numpy(array)
    if is_prediction and values.ndim == 3:  # logits (C, H, W)
        values = values.argmax(axis=0)
    return np.squeeze(values).astype(np.int64, copy=False)


def _semantic_palette(prediction: Mapping[str, Any], palette: Sequence[Sequence[int]] | None,
                      num_classes: int) -> np.ndarray:
    """The palette to draw class ids with; the class count comes from num_classes, the logits or the ids."""
    if not num_classes:
        predicted = to_numpy(prediction[SEMANTIC])
        num_classes = predicted.shape[0] if predicted.ndim == 3 else int(predicted.max()) + 1
    return palette_from_sequence(palette, num_classes)


def sample_panels(image: Any, ground_truth: Mapping[str, Any], prediction: Mapping[str, Any], *,
                  palette: Sequence[Sequence[int]] | None = None, num_classes: int = 0,
                  min_depth: float = 0.1, max_depth: float = 10.0) -> list[Panel]:
    """One frame's row: input, then ``<task> gt`` and ``<task> pred`` for each predicted task (canonical order).

    Per-frame arrays (no batch axis): depth (1, H, W) or (H, W) in metres; semantic ground truth ids (H, W),
    prediction logits (C, H, W) or ids (H, W); normals (3, H, W) or (H, W, 3). A task missing from
    ``ground_truth`` gets only its prediction panel. ``palette`` defaults to :func:`default_palette`.
    """
    panels: list[Panel] = [("input", image_to_rgb_uint8(image))]
    colours = _semantic_palette(prediction, palette, num_classes) if SEMANTIC in prediction else None
    for task in (t for t in ALL_TASKS if t in prediction):
        pairs = [("gt", ground_truth[task], False)] if task in ground_truth else []
        pairs.append(("pred", prediction[task], True))
        for kind, value, is_prediction in pairs:
            if task == DEPTH:
                picture = colorize_depth(_depth_plane(value), min_depth, max_depth)
            elif task == SEMANTIC:
                picture = colorize_labels(_label_plane(value, is_prediction), colours)
            elif task == NORMALS:
                picture = colorize_normals(to_numpy(value))
            else:
                raise ValueError(f"no colouriser for task '{task}'")
            panels.append((f"{task} {kind}", picture))
    return panels


def _fit_tile(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    if picture.dtype != np.uint8:
        raise ValueError(f"contact-sheet panels must be uint8, got {picture.dtype}; colourise them first")
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"contact-sheet panels must be (H, W, 3) or (H, W), got shape {picture.shape}")
    if picture.shape[:2] != (height, width):
        picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_NEAREST)
    return picture


def _put_caption(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """Write ``text`` in the caption bar whose top-left corner is (x, y), shrinking it to fit ``width``."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (text_width, _), _ = cv2.getTextSize(text, font, scale, 1)
    if text_width > width - 4:
        scale = max(0.25, scale * (width - 4) / text_width)
    cv2.putText(canvas, text, (x + 2, y + CAPTION_HEIGHT - 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def render_contact_sheet(rows: Sequence[Sequence[Panel]], tile_height: int | None = None) -> np.ndarray:
    """Tile the rows into one RGB uint8 image; every tile takes the first panel's aspect ratio."""
    if not rows or not rows[0]:
        raise ValueError("a contact sheet needs at least one row with at least one panel")
    first = rows[0][0][1]
    height = int(tile_height or first.shape[0])
    width = max(1, int(round(height * first.shape[1] / first.shape[0])))
    columns = max(len(row) for row in rows)
    cell_height = CAPTION_HEIGHT + height
    sheet = np.full((GAP + len(rows) * (cell_height + GAP), GAP + columns * (width + GAP), 3), BACKGROUND, np.uint8)
    for r, row in enumerate(rows):
        top = GAP + r * (cell_height + GAP)
        for c, (caption, picture) in enumerate(row):
            left = GAP + c * (width + GAP)
            sheet[top + CAPTION_HEIGHT: top + cell_height, left: left + width] = _fit_tile(np.asarray(picture), width, height)
            _put_caption(sheet, caption, left, top, width)
    return sheet


def write_png_atomic(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Encode an RGB image as PNG and move it into place atomically (temp file in the same folder + rename)."""
    target = Path(path)
    ok, encoded = cv2.imencode(".png", rgb_to_bgr(rgb))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a PNG of shape {rgb.shape}")
    atomic_write_bytes(target, encoded.tobytes())
    return target


def write_contact_sheet(path: str | os.PathLike, rows: Sequence[Sequence[Panel]],
                        tile_height: int | None = None) -> Path:
    """Render ``rows`` (see :func:`render_contact_sheet`) and write them as a PNG at ``path``; returns the path."""
    return write_png_atomic(path, render_contact_sheet(rows, tile_height))
