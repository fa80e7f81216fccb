"""NYU Depth V2 from the official labelled ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py).

The file holds 1449 frames: ``images`` (1449, 3, 640, 480) uint8, ``depths`` (1449, 640, 480) float32 metres
and ``labels`` (1449, 640, 480) raw class ids 0..894 (0 = unlabelled), each frame stored transposed
(MATLAB column order), so every map is transposed back to 480x640 here.
Raw ids map to the standard 40- or 13-class sets, shifted to 0-based ids with unlabelled ->
``IGNORE_INDEX``; the official split has 795 training and 654 test frames. The class maps and split ship
with the package (``resources/nyuv2_meta.json``, derived by ``tools/derive_nyuv2_meta.py``).
The labelled set has no surface normals, so samples carry ``depth`` and ``semantic`` only, unless
``normals_dir`` names a folder of normal maps (the common PNG releases, e.g. those of Ladicky et al. / Eigen &
Fergus used by multi-task papers): one 8- or 16-bit RGB PNG per frame, n = value / max * 2 - 1, an all-zero
(or near-zero length) pixel = no ground truth. Files are matched to frames by the number in their name,
sorted: one per frame of the ``.mat`` (1449), or one per frame of the chosen split (654 test, 795 train).
Releases differ in axes: ``normals_axes`` says which file channel (with sign) is the optical frame's x
(right), y (down) and z (forward), e.g. ``x,-y,-z`` for a release in OpenGL axes (y up, z toward the
viewer); the default ``x,y,z`` takes the file as optical-frame normals already.
"""
from __future__ import annotations

import colorsys
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mtl_perception.data.geometry import NYU_CX, NYU_CY, NYU_FX, NYU_FY, NYU_HEIGHT, NYU_WIDTH, scale_intrinsics
from mtl_perception.data.transforms import Record, to_sample
from mtl_perception.tasks import IGNORE_INDEX

NUM_FRAMES = 1449
NUM_RAW_CLASSES = 894
CLASS_SETS = (13, 40)
SPLITS = ("train", "test", "all")
DEFAULT_NORMALS_AXES = "x,y,z"  # normals PNG channels already in the optical frame (see ``parse_normals_axes``)
NYU_K = np.array([[NYU_FX, 0.0, NYU_CX], [0.0, NYU_FY, NYU_CY], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class NYUv2Meta:
    """Class names, class maps (1-based ids, 0 = unlabelled) and the official split (0-based frame indices)."""

    class_names_40: list[str]
    class_names_13: list[str]
    map894to40: np.ndarray  # (894,): entry i is the 40-class id of raw id i + 1
    map40to13: np.ndarray  # (40,): entry i is the 13-class id of 40-class id i + 1
    train_indices: np.ndarray
    test_indices: np.ndarray


@lru_cache(maxsize=1)
def load_nyuv2_meta() -> NYUv2Meta:
    """The class maps and split shipped in ``mtl_perception/data/resources/nyuv2_meta.json``."""
    text = resources.files("mtl_perception.data").joinpath("resources/nyuv2_meta.json").read_text()
    raw = json.loads(text)
    return NYUv2Meta(raw["class_names_40"], raw["class_names_13"], np.asarray(raw["map894to40"], np.int64),
                     np.asarray(raw["map40to13"], np.int64), np.asarray(raw["train_indices"], np.int64),
                     np.asarray(raw["test_indices"], np.int64))


def _check_classes(num_classes: int) -> None:
    if num_classes not in CLASS_SETS:
        raise ValueError(f"NYUv2 class set must be one of {list(CLASS_SETS)}, got {num_classes}")


def nyuv2_class_names(num_classes: int) -> list[str]:
    _check_classes(num_classes)
    meta = load_nyuv2_meta()
    return list(meta.class_names_13 if num_classes == 13 else meta.class_names_40)


def distinct_palette(count: int) -> list[list[int]]:
    """``count`` well-separated RGB colours (golden-ratio hue steps, alternating brightness)."""
    colours = []
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0
        sat, val = (0.75, 0.95) if i % 2 == 0 else (0.55, 0.7)
        colours.append([int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, sat, val)])
    return colours


def nyuv2_palette(num_classes: int) -> list[list[int]]:
    _check_classes(num_classes)
    return distinct_palette(num_classes)


def raw_label_lut(num_classes: int) -> np.ndarray:
    """Lookup table (895,) uint8: raw NYU id 0..894 -> 0-based id in the 13/40 set, unlabelled -> IGNORE_INDEX."""
    _check_classes(num_classes)
    meta = load_nyuv2_meta()
    to_40 = meta.map894to40
    ids = to_40 if num_classes == 40 else meta.map40to13[to_40 - 1]
    lut = np.full(NUM_RAW_CLASSES + 1, IGNORE_INDEX, np.uint8)
    lut[1:] = ids - 1
    return lut


def map_raw_labels(raw: np.ndarray, num_classes: int) -> np.ndarray:
    """Map raw NYU label ids to 0-based ids of the 13/40-class set (uint8, unlabelled -> IGNORE_INDEX)."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > NUM_RAW_CLASSES):
        raise ValueError(f"raw NYUv2 labels must lie in 0..{NUM_RAW_CLASSES}, got {raw.min()}..{raw.max()}")
    return raw_label_lut(num_classes)[raw.astype(np.int64)]


def split_indices(split: str, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """0-based frame indices of the official train/test split, or all frames."""
    if split not in SPLITS:
        raise ValueError(f"NYUv2 split must be one of {list(SPLITS)}, got '{split}'")
    if split == "all":
        return np.arange(num_frames)
    meta = load_nyuv2_meta()
    return meta.train_indices if split == "train" else meta.test_indices


class NYUv2Dataset(Dataset):
    """Frames of the labelled NYUv2 ``.mat`` as samples (``transform`` turns a record into one).

    path: the user's ``nyu_depth_v2_labeled.mat``; split: train (795) | test (654) | all;
    num_classes: 13 or 40. The HDF5 file is opened lazily in each process (safe with DataLoader workers).
    """

    def __init__(self, path: str | Path, split: str = "train", num_classes: int = 13,
                 transform: Callable[[Record], Any] | None = None, normals_dir: str | Path | None = None,
                 normals_axes: str = DEFAULT_NORMALS_AXES) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"NYUv2 file {self.path} not found; pass the path of nyu_depth_v2_labeled.mat "
                                    "(data.root in the config)")
        _check_classes(num_classes)
        self.num_classes = num_classes
        try:
            with h5py.File(self.path, "r") as handle:
                shapes = {key: handle[key].shape for key in ("images", "depths", "labels") if key in handle}
        except OSError as exc:
            raise ValueError(f"{self.path} is not an HDF5 (MATLAB v7.3) file: {exc}; "
                             "expected the official nyu_depth_v2_labeled.mat") from None
        if len(shapes) != 3:
            raise ValueError(f"{self.path} lacks {sorted({'images', 'depths', 'labels'} - set(shapes))}; "
                             "expected the labelled NYUv2 .mat with images, depths and labels")
        count, channels, self.width, self.height = shapes["images"]
        if channels != 3 or shapes["depths"] != (count, self.width, self.height) or shapes["labels"] != shapes["depths"]:
            raise ValueError(f"{self.path} has unexpected shapes {shapes}; expected images (N, 3, W, H) and "
                             "depths/labels (N, W, H) as in nyu_depth_v2_labeled.mat")
        if split != "all" and count != NUM_FRAMES:
            raise ValueError(f"{self.path} holds {count} frames but the official split indexes {NUM_FRAMES}; "
                             "use split='all' for other files")
        self.indices = split_indices(split, count)
        self.K = scale_intrinsics(NYU_K, self.width / NYU_WIDTH, self.height / NYU_HEIGHT)
        self.lut = raw_label_lut(num_classes)
        self.transform = transform if transform is not None else to_sample
        self._handle = None
        self._handle_pid: int | None = None
        self.normals_axes = parse_normals_axes(normals_axes)
        self.normals_files = match_normals_files(normals_dir, count, self.indices, split) if normals_dir is not None else None

    @property
    def tasks(self) -> list[str]:
        """The tasks with ground truth: depth and semantic, plus normals when a normals folder is given."""
        return ["depth", "semantic"] + (["normals"] if self.normals_files is not None else [])

    def _file(self):
        import h5py

        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._handle_pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"] = None, None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def read_record(self, position: int) -> Record:
        """The raw record (rgb, depth, labels, K) of frame ``position`` of this split, at the stored size."""
        index = int(self.indices[position])
        handle = self._file()
        rgb = np.ascontiguousarray(handle["images"][index].transpose(2, 1, 0))
        depth = np.ascontiguousarray(handle["depths"][index].T, dtype=np.float32)
        raw = handle["labels"][index].T
        if raw.max(initial=0) > NUM_RAW_CLASSES:
            raise ValueError(f"frame {index} of {self.path} has label id {raw.max()} > {NUM_RAW_CLASSES}")
        record = {"rgb": rgb, "depth": depth, "labels": self.lut[raw.astype(np.int64)], "K": self.K.copy()}
        if self.normals_files is not None:
            record["normals"] = read_normals_png(self.normals_files[position], self.normals_axes, (self.height, self.width))
        return record

    def __getitem__(self, position: int) -> Any:
        if not 0 <= position < len(self):
            raise IndexError(f"frame {position} out of range for {len(self)} frames")
        return self.transform(self.read_record(position))


# ---------------------------------------------------------------------------------------------- normals folders


def parse_normals_axes(spec: str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """``'x,-y,-z'`` -> (file channel per optical axis, sign per optical axis); ValueError naming the format."""
    parts = [p.strip().lower() for p in str(spec).split(",")]
    channels, signs = [], []
    for part in parts:
        sign = -1.0 if part.startswith("-") else 1.0
        axis = part.lstrip("+-")
        if axis not in ("x", "y", "z"):
            channels = []
            break
        channels.append("xyz".index(axis))
        signs.append(sign)
    if len(parts) != 3 or sorted(channels) != [0, 1, 2]:
        raise ValueError(f"normals axes '{str(spec)[:40]}' must name the file channel of the optical x, y and z axes once each, "
                         "with an optional sign, e.g. x,y,z (file already in the optical frame) or x,-y,-z (file in OpenGL axes)")
    return (channels[0], channels[1], channels[2]), (signs[0], signs[1], signs[2])


def _frame_number(path: Path) -> int:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else -1


def match_normals_files(folder: str | Path, count: int, indices: np.ndarray, split: str) -> list[Path]:
    """The normals PNG of each frame of the split, in order (see the module docstring for the matching rule)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"NYUv2 normals folder {folder} not found; give the folder of normal-map PNGs (one per frame)")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=lambda p: (_frame_number(p), p.name))
    if len(files) == count:
        return [files[int(i)] for i in indices]
    if len(files) == len(indices):
        return files
    raise ValueError(f"NYUv2 normals folder {folder} holds {len(files)} PNG files; expected one per frame of the .mat ({count}) "
                     f"or of the {split} split ({len(indices)}), named so that sorting by their number gives the frame order")


def read_normals_png(path: Path, axes: tuple[tuple[int, int, int], tuple[float, float, float]], size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) float32 unit-normal map in the optical frame from an RGB PNG; zeros where the file has no normal."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] < 3 or raw.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"normals file {path} must be an 8- or 16-bit RGB PNG, got "
                         f"{'an unreadable file' if raw is None else f'{raw.dtype} with shape {raw.shape}'}")
    rgb = cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
    if rgb.shape[:2] != size:
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    empty = (rgb == 0).all(axis=2)
    vectors = rgb / np.float32(np.iinfo(raw.dtype).max) * 2.0 - 1.0
    channels, signs = axes
    normals = np.stack([vectors[:, :, channels[i]] * signs[i] for i in range(3)], axis=2)
    length = np.linalg.norm(normals, axis=2, keepdims=True)
    invalid = empty | (length[:, :, 0] < 0.5)
    normals = np.where(invalid[:, :, None], 0.0, normals / np.maximum(length, 1e-6)).astype(np.float32)
    return normals
