"""NYUv2 loader on a small fake labelled .mat in the official HDF5 layout: transposes, class maps, split."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mtl_perception.data.nyuv2 import (
    NUM_FRAMES,
    NYUv2Dataset,
    load_nyuv2_meta,
    map_raw_labels,
    nyuv2_class_names,
    nyuv2_palette,
)
from mtl_perception.tasks import IGNORE_INDEX

WIDTH, HEIGHT = 8, 6  # tiny frames; the real file is 640x480
from shared_data import SKIP_HINT, shared_path

SHARED_META = shared_path("nyuv2_meta")


def _image(frame: int) -> np.ndarray:
    """Distinct RGB values (HEIGHT, WIDTH, 3) per frame, row and column."""
    y, x, c = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), np.arange(3), indexing="ij")
    return ((frame * 7 + y * 31 + x * 5 + c * 80) % 256).astype(np.uint8)


def _write_fake_mat(path: Path, count: int = NUM_FRAMES) -> np.ndarray:
    """Write images/depths/labels stored transposed as in nyu_depth_v2_labeled.mat; returns the (H, W) raw labels."""
    raw = np.zeros((HEIGHT, WIDTH), np.uint16)
    raw[0, 1], raw[0, 2], raw[1, 0], raw[5, 7] = 1, 3, 894, 11  # row 0 col 0 stays unlabelled
    images = np.stack([_image(i).transpose(2, 1, 0) for i in range(count)])
    depth = (1.0 + np.arange(HEIGHT)[:, None] + 0.1 * np.arange(WIDTH)[None, :]).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["depths"] = np.broadcast_to(depth.T, (count, WIDTH, HEIGHT))
        f["labels"] = np.broadcast_to(raw.T, (count, WIDTH, HEIGHT))
    return raw


@pytest.fixture(scope="module")
def fake_mat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    _write_fake_mat(path)
    return path


def test_official_split_and_class_sets() -> None:
    meta = load_nyuv2_meta()
    assert len(meta.train_indices) == 795 and len(meta.test_indices) == 654
    assert set(meta.train_indices) | set(meta.test_indices) == set(range(NUM_FRAMES))
    assert not set(meta.train_indices) & set(meta.test_indices)
    assert meta.train_indices[:3].tolist() == [2, 3, 4]  # 1-based 3, 4, 5 in splits.mat
    assert meta.test_indices[:3].tolist() == [0, 1, 8]
    names13 = nyuv2_class_names(13)
    assert names13 == ["bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
                       "table", "tv", "wall", "window"]
    assert nyuv2_class_names(40)[:3] == ["wall", "floor", "cabinet"]
    assert len(nyuv2_palette(40)) == 40 and len({tuple(c) for c in nyuv2_palette(40)}) == 40


def test_raw_label_mapping_by_hand() -> None:
    raw = np.array([0, 1, 3, 11])
    # Source tables: mapClass[1] = 40 (otherprop), mapClass[3] = 3 (cabinet), mapClass[11] = 2 (floor);
    # labels13: 40-class 40 -> 7 (objects), 3 -> 6 (furniture), 2 -> 5 (floor). Shifted to 0-based.
    assert map_raw_labels(raw, 40).tolist() == [IGNORE_INDEX, 39, 2, 1]
    assert map_raw_labels(raw, 13).tolist() == [IGNORE_INDEX, 6, 5, 4]
    with pytest.raises(ValueError, match="0..894"):
        map_raw_labels(np.array([895]), 13)
    with pytest.raises(ValueError, match="13, 40"):
        map_raw_labels(raw, 20)


@pytest.mark.skipif(not SHARED_META.is_dir(), reason=f"shared/nyuv2_meta (source .mat tables) is absent: {SKIP_HINT}")
def test_shipped_json_matches_source_tables() -> None:
    import scipy.io

    meta = load_nyuv2_meta()
    np.testing.assert_array_equal(meta.map894to40, scipy.io.loadmat(SHARED_META / "classMapping40.mat")["mapClass"].ravel())
    labels13 = scipy.io.loadmat(SHARED_META / "class13Mapping.mat")["classMapping13"][0, 0]["labels13"].ravel()
    np.testing.assert_array_equal(meta.map40to13, labels13)
    splits = scipy.io.loadmat(SHARED_META / "splits.mat")
    np.testing.assert_array_equal(meta.train_indices, np.sort(splits["trainNdxs"].ravel() - 1))
    np.testing.assert_array_equal(meta.test_indices, np.sort(splits["testNdxs"].ravel() - 1))


def test_loader_transposes_maps_and_splits(fake_mat: Path) -> None:
    train = NYUv2Dataset(fake_mat, "train", 13)
    test = NYUv2Dataset(fake_mat, "test", 40)
    assert len(train) == 795 and len(test) == 654
    record = train.read_record(0)  # official train frame 0 is file frame 2
    assert record["rgb"].shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(record["rgb"], _image(2))
    assert record["depth"][2, 3] == pytest.approx(1.0 + 2 + 0.3)
    labels = record["labels"]
    assert labels.shape == (HEIGHT, WIDTH) and labels.dtype == np.uint8
    assert labels[0, 0] == IGNORE_INDEX and labels[0, 1] == 6 and labels[0, 2] == 5 and labels[5, 7] == 4
    assert labels[1, 0] == map_raw_labels(np.array([894]), 13)[0]
    assert test.read_record(2)["labels"][0, 2] == 2  # cabinet in the 40-class set
    assert np.array_equal(test.read_record(2)["rgb"], _image(8))  # official test frame 2 is file frame 8
    np.testing.assert_allclose(record["K"][0], [518.8579 * WIDTH / 640, 0.0, (325.5825 + 0.5) * WIDTH / 640 - 0.5])
    sample = train[0]
    assert set(sample) == {"image", "intrinsics", "depth", "semantic"}
    assert sample["semantic"].dtype == torch.int64 and sample["depth"].shape == (1, HEIGHT, WIDTH)


def test_loader_rejects_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nyu_depth_v2_labeled.mat"):
        NYUv2Dataset(tmp_path / "missing.mat")
    not_hdf5 = tmp_path / "old.mat"
    not_hdf5.write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(ValueError, match="HDF5"):
        NYUv2Dataset(not_hdf5)
    short = tmp_path / "short.mat"
    _write_fake_mat(short, count=4)
    with pytest.raises(ValueError, match="holds 4 frames"):
        NYUv2Dataset(short, "train")
    assert len(NYUv2Dataset(short, "all")) == 4
    with h5py.File(tmp_path / "nolabels.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="lacks"):
        NYUv2Dataset(tmp_path / "nolabels.mat", "all")


def test_build_datasets_and_info_for_nyuv2(fake_mat: Path) -> None:
    from mtl_perception.config import DataConfig
    from mtl_perception.data.datasets import build_datasets, dataset_info

    cfg = DataConfig(dataset="nyuv2", root=str(fake_mat), nyu_classes=40, height=32, width=64)
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (795, 654)
    sample = val[0]
    assert sample["image"].shape == (3, 32, 64) and sample["semantic"].shape == (32, 64)
    info = dataset_info(cfg)
    assert info.num_classes == 40 and info.class_names[0] == "wall"
    assert info.focal_length_px == pytest.approx(518.8579 * 64 / 640)
