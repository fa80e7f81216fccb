"""Folder format: write/read round trip, partial task sets, clear errors on malformed folders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtl_perception.data.folder import (
    FolderDataset,
    FolderFormatError,
    decode_normals_png,
    encode_normals_png,
    read_folder_meta,
    write_dataset_meta,
    write_frame,
)
from mtl_perception.data.synthetic import SYNTH_CLASS_NAMES, SYNTH_PALETTE, render_frame
from mtl_perception.tasks import IGNORE_INDEX


@pytest.mark.parametrize("depth_format,normals_format", [("png", "npy"), ("npy", "png")])
def test_round_trip(tmp_path: Path, depth_format: str, normals_format: str) -> None:
    frames = [render_frame(seed, 40, 48) for seed in (0, 1)]
    write_dataset_meta(tmp_path, frames[0].K, SYNTH_CLASS_NAMES, SYNTH_PALETTE, height=40, width=48)
    for index, frame in enumerate(frames):
        write_frame(tmp_path, index, frame, depth_format=depth_format, normals_format=normals_format)
    assert sorted(p.name for p in (tmp_path / "rgb").iterdir()) == ["000000.png", "000001.png"]
    dataset = FolderDataset(tmp_path)
    assert len(dataset) == 2 and dataset.tasks == ["depth", "labels", "normals"]
    assert dataset.meta.class_names == SYNTH_CLASS_NAMES and dataset.meta.palette == SYNTH_PALETTE
    for index, frame in enumerate(frames):
        record = dataset.read_record(index)
        assert np.array_equal(record["rgb"], frame.rgb)  # RGB order survives OpenCV's BGR files
        assert np.array_equal(record["labels"], frame.labels)
        np.testing.assert_allclose(record["K"], frame.K, atol=1e-6)
        depth_tol = 0.5e-3 + 1e-6 if depth_format == "png" else 0.0
        np.testing.assert_allclose(record["depth"], frame.depth, atol=depth_tol)
        normals_tol = 1e-4 if normals_format == "png" else 0.0
        np.testing.assert_allclose(record["normals"], frame.normals, atol=normals_tol)
    sample = dataset[1]
    assert sample["image"].shape == (3, 40, 48) and sample["semantic"].dtype == torch.int64
    assert sample["depth"].shape == (1, 40, 48) and sample["normals"].shape == (3, 40, 48)


def test_depth_png_is_millimetres(tmp_path: Path) -> None:
    frame = render_frame(2, 32, 40)
    write_dataset_meta(tmp_path, frame.K)
    write_frame(tmp_path, 0, frame)
    raw = cv2.imread(str(tmp_path / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert raw[10, 10] == round(float(frame.depth[10, 10]) * 1000)


def test_rgb_and_depth_only_folder(tmp_path: Path) -> None:
    """A user's folder: no labels or normals, no class names, size read from the image, depth as float .npy."""
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    depth = np.full((24, 32), 2.0, np.float32)
    depth[0, 0] = np.nan
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.save(tmp_path / "depth" / "a.npy", depth)
    (tmp_path / "camera.yaml").write_text("K: [[30, 0, 15.5], [0, 30, 11.5], [0, 0, 1]]\n")
    meta = read_folder_meta(tmp_path)
    assert (meta.height, meta.width) == (24, 32) and meta.class_names is None
    dataset = FolderDataset(tmp_path)
    assert dataset.tasks == ["depth"]
    sample = dataset[0]
    assert set(sample) == {"image", "intrinsics", "depth"}
    assert sample["depth"][0, 0, 0] == 0  # NaN -> invalid
    assert torch.all(sample["depth"][0, 1:] == 2.0)


def test_labels_with_other_ignore_value_become_255(tmp_path: Path) -> None:
    frame = render_frame(3, 24, 32)
    write_frame(tmp_path, 0, frame)
    labels = frame.labels.copy()
    labels[:4] = 200
    cv2.imwrite(str(tmp_path / "labels" / "000000.png"), labels)
    write_dataset_meta(tmp_path, frame.K, ignore_index=200)
    record = FolderDataset(tmp_path).read_record(0)
    assert np.all(record["labels"][:4] == IGNORE_INDEX)
    assert np.array_equal(record["labels"][4:], frame.labels[4:])


def test_normals_png_codec_keeps_invalid_zero() -> None:
    normals = np.array([[[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.6, -0.8, 0.0]]], np.float32)
    decoded = decode_normals_png(encode_normals_png(normals))
    np.testing.assert_allclose(decoded, normals, atol=1e-4)


def test_malformed_folders_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FolderFormatError, match="camera.yaml"):
        FolderDataset(tmp_path)
    frames = [render_frame(s, 24, 32) for s in (0, 1)]
    write_dataset_meta(tmp_path, frames[0].K, height=24, width=32)
    for i, frame in enumerate(frames):
        write_frame(tmp_path, i, frame)
    (tmp_path / "labels" / "000001.png").unlink()
    with pytest.raises(FolderFormatError, match="lacks 1 of 2 frames"):
        FolderDataset(tmp_path)
    write_frame(tmp_path, 1, frames[1])
    write_dataset_meta(tmp_path, frames[0].K, height=48, width=64)
    with pytest.raises(FolderFormatError, match="camera.yaml says"):
        FolderDataset(tmp_path).read_record(0)
    (tmp_path / "camera.yaml").write_text("K: [1, 2, 3]\n")
    with pytest.raises(FolderFormatError, match="3x3"):
        FolderDataset(tmp_path)
