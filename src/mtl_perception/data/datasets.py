"""Dataset construction from the config: synthetic (on the fly), folder and NYUv2, plus their facts.

Every dataset returns the SAMPLE dict of ``transforms`` at the network size (``data.height`` x
``data.width``). ``dataset_info`` gives what training records into the model file: class names,
palette, the training camera's focal length at the network width and the ignore id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mtl_perception.config import DataConfig
from mtl_perception.data.folder import FolderDataset, read_folder_meta
from mtl_perception.data.geometry import NYU_FX, NYU_WIDTH, synthetic_intrinsics
from mtl_perception.data.nyuv2 import NYUv2Dataset, distinct_palette, nyuv2_class_names, nyuv2_palette
from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
from mtl_perception.data.synthetic import render_frame
from mtl_perception.data.transforms import EvalTransform, TrainTransform, frame_to_record
from mtl_perception.tasks import IGNORE_INDEX

DATASETS = ("synthetic", "folder", "nyuv2")
VAL_SEED_OFFSET = 10_000_000  # synthetic validation seeds start here above the training seed
RENDER_MARGIN = 1.25  # synthetic frames for augmentation are rendered this much larger than the network size
FOLDER_VAL_FRACTION = 0.1  # held-out tail of a folder dataset when no val_root is given


class SyntheticDataset(Dataset):
    """``count`` synthetic frames rendered on the fly; frame i uses seed ``seed + i`` (deterministic per index).

    Without augmentation the frames are rendered at (height, width); with it they are rendered
    RENDER_MARGIN larger, then randomly scaled, cropped, flipped and colour-jittered to (height, width).
    """

    def __init__(self, count: int, height: int, width: int, seed: int = 0, augment: bool = False) -> None:
        if count < 0 or height < 1 or width < 1:
            raise ValueError(f"synthetic dataset needs count >= 0 and a positive size, got {count} frames at {height}x{width}")
        self.count, self.height, self.width, self.seed, self.augment = count, height, width, seed, augment
        if augment:
            self.render_size = (math.ceil(height * RENDER_MARGIN), math.ceil(width * RENDER_MARGIN))
            self.transform = TrainTransform(height, width)
        else:
            self.render_size = (height, width)
            self.transform = EvalTransform(height, width)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} out of range for {self.count} frames")
        frame = render_frame(self.seed + index, *self.render_size)
        return self.transform(frame_to_record(frame))


def _check_dataset(data_cfg: DataConfig) -> None:
    if data_cfg.dataset not in DATASETS:
        raise ValueError(f"unknown data.dataset '{data_cfg.dataset}'; valid datasets: {list(DATASETS)}")
    if data_cfg.dataset != "synthetic" and not data_cfg.root:
        what = "folder dataset root" if data_cfg.dataset == "folder" else "path of nyu_depth_v2_labeled.mat"
        raise ValueError(f"data.root must name the {what} for data.dataset={data_cfg.dataset}")


def build_datasets(data_cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """Training and validation datasets for a data config.

    synthetic: ``train_count`` frames from seed ``seed`` and ``val_count`` frames from a disjoint seed range.
    folder: ``root`` for training and ``val_root`` for validation, or the last 10% of ``root`` held out.
    nyuv2: the official 795 training / 654 test frames of the ``.mat`` at ``root``, ``nyu_classes`` classes.
    """
    _check_dataset(data_cfg)
    height, width = data_cfg.height, data_cfg.width
    train_tf = TrainTransform(height, width) if data_cfg.augment else EvalTransform(height, width)
    val_tf = EvalTransform(height, width)
    if data_cfg.dataset == "synthetic":
        return (SyntheticDataset(data_cfg.train_count, height, width, data_cfg.seed, data_cfg.augment),
                SyntheticDataset(data_cfg.val_count, height, width, data_cfg.seed + VAL_SEED_OFFSET, augment=False))
    if data_cfg.dataset == "nyuv2":
        return (NYUv2Dataset(data_cfg.root, "train", data_cfg.nyu_classes, train_tf),
                NYUv2Dataset(data_cfg.root, "test", data_cfg.nyu_classes, val_tf))
    if data_cfg.val_root:
        return FolderDataset(data_cfg.root, train_tf), FolderDataset(data_cfg.val_root, val_tf)
    total = len(FolderDataset(data_cfg.root))
    if total < 2:
        raise ValueError(f"folder dataset {data_cfg.root} has {total} frame(s); a held-out split needs at least 2 "
                         "(or set data.val_root)")
    n_val = max(1, int(round(total * FOLDER_VAL_FRACTION)))
    return (FolderDataset(data_cfg.root, train_tf, indices=range(total - n_val)),
            FolderDataset(data_cfg.root, val_tf, indices=range(total - n_val, total)))


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset that the model file records."""

    class_names: list[str]
    palette: list[list[int]]
    focal_length_px: float  # fx of the training camera at the network input width (data.width)
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def dataset_info(data_cfg: DataConfig) -> DatasetInfo:
    """Class names, palette, training focal length at ``data.width`` and ignore id of the configured dataset."""
    _check_dataset(data_cfg)
    if data_cfg.dataset == "synthetic":
        fx = float(synthetic_intrinsics(data_cfg.height, data_cfg.width)[0, 0])
        return DatasetInfo(list(SYNTH_CLASS_NAMES), [list(c) for c in SYNTH_PALETTE], fx)
    if data_cfg.dataset == "nyuv2":
        return DatasetInfo(nyuv2_class_names(data_cfg.nyu_classes), nyuv2_palette(data_cfg.nyu_classes),
                           NYU_FX * data_cfg.width / NYU_WIDTH)
    meta = read_folder_meta(Path(data_cfg.root))
    names = meta.class_names or []
    palette = meta.palette or distinct_palette(len(names))
    return DatasetInfo(list(names), [list(c) for c in palette], float(meta.K[0, 0]) * data_cfg.width / meta.width)
