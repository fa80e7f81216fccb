"""Contact sheet: tile placement, captions, per-task panels and an atomic PNG write."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtl_perception.colorize import colorize_labels
from mtl_perception.evaluation.contact_sheet import (
    BACKGROUND,
    CAPTION_HEIGHT,
    GAP,
    render_contact_sheet,
    sample_panels,
    write_contact_sheet,
)


def solid(value: int, height: int = 8, width: int = 10) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def test_render_places_tiles_and_captions() -> None:
    rows = [[("input", solid(50)), ("a", solid(100)), ("b", solid(150))], [("input", solid(200))]]
    sheet = render_contact_sheet(rows)
    cell = CAPTION_HEIGHT + 8
    assert sheet.shape == (GAP + 2 * (cell + GAP), GAP + 3 * (10 + GAP), 3) and sheet.dtype == np.uint8
    for r, row in enumerate(rows):
        for c, (_, picture) in enumerate(row):
            top, left = GAP + r * (cell + GAP) + CAPTION_HEIGHT, GAP + c * (10 + GAP)
            np.testing.assert_array_equal(sheet[top: top + 8, left: left + 10], picture)
    caption = sheet[GAP: GAP + CAPTION_HEIGHT, GAP: GAP + 10]
    assert caption.max() > BACKGROUND  # text was drawn
    missing = sheet[GAP + cell + GAP + CAPTION_HEIGHT:, GAP + 12: GAP + 22]
    assert (missing[:8] == BACKGROUND).all()  # a short row leaves empty cells


def test_render_resizes_to_tile_height_and_accepts_grey() -> None:
    rows = [[("input", solid(10, 8, 16)), ("grey", np.full((4, 4), 99, np.uint8))]]
    sheet = render_contact_sheet(rows, tile_height=4)
    assert sheet.shape == (GAP + CAPTION_HEIGHT + 4 + GAP, GAP + 2 * (8 + GAP), 3)
    with pytest.raises(ValueError, match="uint8"):
        render_contact_sheet([[("float", np.zeros((4, 4, 3)))]])
    with pytest.raises(ValueError, match="at least one"):
        render_contact_sheet([])


def test_sample_panels_colourise_every_task() -> None:
    height, width = 6, 8
    image = np.random.default_rng(0).random((3, height, width)).astype(np.float32)
    gt_labels = np.zeros((height, width), np.int64)
    gt_labels[0] = 255
    normals = np.zeros((3, height, width), np.float32)
    normals[2] = 1.0
    ground_truth = {"depth": np.full((1, height, width), 2.0), "semantic": gt_labels, "normals": normals}
    logits = np.zeros((3, height, width), np.float32)
    logits[1] = 1.0
    prediction = {"normals": normals, "depth": np.full((1, height, width), 3.0), "semantic": logits}
    palette = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    panels = sample_panels(image, ground_truth, prediction, palette=palette)
    assert [name for name, _ in panels] == ["input", "depth gt", "depth pred", "semantic gt", "semantic pred",
                                            "normals gt", "normals pred"]
    assert all(p.shape == (height, width, 3) and p.dtype == np.uint8 for _, p in panels)
    pictures = dict(panels)
    np.testing.assert_array_equal(pictures["semantic gt"], colorize_labels(gt_labels, palette))
    assert (pictures["semantic pred"] == (4, 5, 6)).all()  # argmax of the logits is class 1
    assert (pictures["normals pred"] == (128, 128, 255)).all()
    np.testing.assert_array_equal(pictures["input"], (image.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))


def test_write_contact_sheet_is_a_readable_png_without_leftovers(tmp_path) -> None:
    rows = [[("input", solid(50)), ("x", np.dstack([solid(0)[..., 0], solid(90)[..., 0], solid(255)[..., 0]]))]]
    target = write_contact_sheet(tmp_path / "sheets" / "sheet.png", rows)
    assert target == tmp_path / "sheets" / "sheet.png"
    read_back = cv2.imread(str(target), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(read_back, render_contact_sheet(rows))
    assert sorted(p.name for p in target.parent.iterdir()) == ["sheet.png"]
