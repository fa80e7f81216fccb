"""Dataset construction from DataConfig, dataset facts, and the `synth` command writing a readable folder."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtl_perception.config import DataConfig
from mtl_perception.data.datasets import VAL_SEED_OFFSET, SyntheticDataset, build_datasets, dataset_info
from mtl_perception.data.folder import FolderDataset
from mtl_perception.cli.data import add_synth_arguments, parse_size, synth_main
from mtl_perception.data.synthetic import SYNTH_CLASS_NAMES, SYNTH_PALETTE, render_frame, render_sequence, synthetic_intrinsics
from mtl_perception.data.transforms import EvalTransform, frame_to_record
from mtl_perception.tasks import IGNORE_INDEX


def test_synthetic_dataset_is_deterministic_per_index() -> None:
    dataset = SyntheticDataset(3, 32, 40, seed=20)
    assert len(dataset) == 3
    sample = dataset[1]
    expected = EvalTransform(32, 40)(frame_to_record(render_frame(21, 32, 40)))
    for key in expected:
        assert torch.equal(sample[key], expected[key]), key
    with pytest.raises(IndexError):
        dataset[3]


def test_augmented_synthetic_dataset_renders_larger_and_outputs_network_size() -> None:
    dataset = SyntheticDataset(2, 32, 40, seed=0, augment=True)
    assert dataset.render_size == (40, 50)
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["image"].shape == (3, 32, 40) and sample["normals"].shape == (3, 32, 40)
    assert sample["depth"].shape == (1, 32, 40) and sample["semantic"].shape == (32, 40)
    # Zooming in never reduces the focal length below the unaugmented camera's.
    assert sample["intrinsics"][0, 0].item() >= synthetic_intrinsics(32, 40)[0, 0] - 1e-4
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 40) and batch["semantic"].dtype == torch.int64


def test_build_synthetic_splits_use_disjoint_seeds() -> None:
    cfg = DataConfig(height=32, width=64, train_count=5, val_count=2, seed=3)
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (5, 2)
    assert train.augment and not val.augment
    assert train.seed == 3 and val.seed == 3 + VAL_SEED_OFFSET
    assert val[0]["image"].shape == (3, 32, 64)
    info = dataset_info(cfg)
    assert info.class_names == SYNTH_CLASS_NAMES and info.palette == SYNTH_PALETTE
    assert info.num_classes == 7 and info.ignore_index == IGNORE_INDEX
    assert info.focal_length_px == pytest.approx(519.0 * 64 / 640)


def _synth(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    return synth_main(parser.parse_args(["--out", str(tmp_path), *argv]))


def test_synth_command_writes_a_folder_the_folder_dataset_reads(tmp_path: Path) -> None:
    assert _synth(tmp_path / "frames", "--count", "3", "--size", "24x32", "--seed", "4") == 0
    dataset = FolderDataset(tmp_path / "frames")
    assert len(dataset) == 3 and dataset.tasks == ["depth", "labels", "normals"]
    np.testing.assert_allclose(dataset.meta.K, synthetic_intrinsics(24, 32), atol=1e-6)
    assert (dataset.meta.height, dataset.meta.width) == (24, 32)
    record, frame = dataset.read_record(2), render_frame(6, 24, 32)
    assert np.array_equal(record["rgb"], frame.rgb) and np.array_equal(record["labels"], frame.labels)
    with pytest.raises(SystemExit, match="already holds frames"):
        _synth(tmp_path / "frames", "--count", "1", "--size", "24x32")
    assert _synth(tmp_path / "frames", "--count", "1", "--size", "24x32", "--overwrite") == 0
    assert len(FolderDataset(tmp_path / "frames")) == 1


def test_synth_sequence_and_float_formats(tmp_path: Path) -> None:
    assert _synth(tmp_path, "--count", "2", "--size", "24x32", "--sequence", "--seed", "9",
                  "--depth-format", "npy", "--normals-format", "png") == 0
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == ["000000.npy", "000001.npy"]
    expected = list(render_sequence(9, 2, 24, 32))
    record = FolderDataset(tmp_path).read_record(1)
    np.testing.assert_array_equal(record["depth"], expected[1].depth)
    np.testing.assert_allclose(record["normals"], expected[1].normals, atol=1e-4)


def test_size_parsing() -> None:
    assert parse_size("240x320") == (240, 320)
    for bad in ("240", "ax3", "0x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_build_folder_splits_and_info(tmp_path: Path) -> None:
    _synth(tmp_path / "a", "--count", "10", "--size", "24x32")
    _synth(tmp_path / "b", "--count", "2", "--size", "24x32", "--seed", "50")
    cfg = DataConfig(dataset="folder", root=str(tmp_path / "a"), height=32, width=64, augment=False)
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (9, 1)  # the last 10% is held out
    assert train[0]["image"].shape == (3, 32, 64)
    np.testing.assert_allclose(val[0]["intrinsics"].numpy(), synthetic_intrinsics(32, 64), rtol=1e-5)
    cfg.val_root = str(tmp_path / "b")
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (10, 2)
    info = dataset_info(cfg)
    assert info.class_names == SYNTH_CLASS_NAMES
    assert info.focal_length_px == pytest.approx(519.0 * 64 / 640, rel=1e-6)


def test_bad_data_configs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="valid datasets"):
        build_datasets(DataConfig(dataset="kitti"))
    with pytest.raises(ValueError, match="data.root"):
        dataset_info(DataConfig(dataset="nyuv2"))
