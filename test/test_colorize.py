"""Colourisers: shapes, dtypes, invalid pixels black, exact palette and normals mapping."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtl_perception.colorize import (
    colorize_depth,
    colorize_labels,
    colorize_normals,
    default_palette,
    overlay,
    palette_from_sequence,
    rgb_to_bgr,
)

BLACK = (0, 0, 0)


def turbo_rgb(level: int) -> np.ndarray:
    return cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def test_depth_shape_dtype_ends_and_invalid_black() -> None:
    depth = np.array([[1.0, 5.0, 0.0], [np.nan, np.inf, -2.0], [0.5, 9.0, 3.0]], dtype=np.float32)
    image = colorize_depth(depth, min_depth=1.0, max_depth=5.0)
    assert image.shape == (3, 3, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], turbo_rgb(0))  # min_depth: first colour of the map
    np.testing.assert_array_equal(image[0, 1], turbo_rgb(255))  # max_depth: last colour
    for row, col in [(0, 2), (1, 0), (1, 1), (1, 2)]:  # 0, NaN, inf, negative
        assert tuple(image[row, col]) == BLACK
    np.testing.assert_array_equal(image[2, 0], image[0, 0])  # below range saturates
    np.testing.assert_array_equal(image[2, 1], image[0, 1])  # above range saturates
    assert image[2, 2].any()  # valid in-range depth is never black


def test_depth_accepts_channel_axis_and_rejects_bad_arguments() -> None:
    depth = np.full((1, 4, 6), 2.0)
    assert colorize_depth(depth, 0.1, 10.0).shape == (4, 6, 3)
    assert colorize_depth(depth.reshape(4, 6, 1), 0.1, 10.0, cmap="viridis").shape == (4, 6, 3)
    with pytest.raises(ValueError, match="turbo"):
        colorize_depth(depth, 0.1, 10.0, cmap="no-such-map")
    with pytest.raises(ValueError, match="min_depth"):
        colorize_depth(depth, 5.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        colorize_depth(np.ones((2, 3, 4, 5)), 0.1, 10.0)


PALETTE = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_labels_exact_palette_and_out_of_range_black(dtype: type) -> None:
    labels = np.array([[0, 1], [2, 255]], dtype=dtype)
    image = colorize_labels(labels, PALETTE)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image.reshape(-1, 3)[:3], PALETTE)
    assert tuple(image[1, 1]) == BLACK


def test_labels_negative_ids_and_large_palette() -> None:
    assert tuple(colorize_labels(np.array([[-1]]), PALETTE)[0, 0]) == BLACK
    palette = np.stack([np.arange(300) % 256, np.arange(300) // 256, np.full(300, 7)], axis=1)
    labels = np.array([[0, 255], [299, 300]])
    image = colorize_labels(labels, palette)
    np.testing.assert_array_equal(image[0, 0], palette[0])
    np.testing.assert_array_equal(image[0, 1], palette[255])  # a real class when the palette has it
    np.testing.assert_array_equal(image[1, 0], palette[299])
    assert tuple(image[1, 1]) == BLACK


def test_labels_reject_bad_palette_and_float_ids() -> None:
    with pytest.raises(ValueError, match="palette"):
        colorize_labels(np.zeros((2, 2), int), [[1, 2]])
    with pytest.raises(ValueError, match="0..255"):
        colorize_labels(np.zeros((2, 2), int), [[1, 2, 300]])
    with pytest.raises(ValueError, match="integer"):
        colorize_labels(np.zeros((2, 2)), PALETTE)
    with pytest.raises(ValueError, match="3 colours for 4"):
        palette_from_sequence(PALETTE, 4)


def test_overlay_blends_and_keeps_image_where_invalid() -> None:
    rgb = np.full((2, 2, 3), 100, np.uint8)
    colours = np.full((2, 2, 3), 200, np.uint8)
    np.testing.assert_array_equal(overlay(rgb, colours, alpha=0.0), rgb)
    np.testing.assert_array_equal(overlay(rgb, colours, alpha=1.0), colours)
    half = overlay(rgb, colours, alpha=0.5, valid=np.array([[True, False], [True, True]]))
    assert tuple(half[0, 0]) == (150, 150, 150) and tuple(half[0, 1]) == (100, 100, 100)
    with pytest.raises(ValueError, match="same shape"):
        overlay(rgb, colours[:1])
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, colours, alpha=1.5)


def test_normals_exact_mapping_layouts_and_invalid_black() -> None:
    normals_hwc = np.array([[[1, 0, 0], [0, 0, -1]], [[0, 0, 0], [np.nan, 0, 1]]], dtype=np.float32)
    image = colorize_normals(normals_hwc)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (255, 128, 128)  # (n + 1) / 2 * 255, 127.5 rounds up
    assert tuple(image[0, 1]) == (128, 128, 0)
    assert tuple(image[1, 0]) == BLACK and tuple(image[1, 1]) == BLACK
    np.testing.assert_array_equal(colorize_normals(np.moveaxis(normals_hwc, -1, 0)), image)
    with pytest.raises(ValueError, match="normals"):
        colorize_normals(np.zeros((4, 4)))


def test_rgb_to_bgr_and_default_palette() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    swapped = rgb_to_bgr(image)
    assert swapped.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(swapped[..., 0], image[..., 2])
    np.testing.assert_array_equal(rgb_to_bgr(swapped), image)
    palette = default_palette(40)
    assert palette.shape == (40, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 40
    np.testing.assert_array_equal(palette_from_sequence(None, 40), palette)
