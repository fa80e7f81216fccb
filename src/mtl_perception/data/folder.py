"""The folder dataset format: one image per file, any subset of tasks, one camera file.

Layout (``NNNNNN`` is a frame name, e.g. a six-digit zero-padded index; frames are paired by name)::

    ROOT/
      camera.yaml          required: intrinsics at the stored size, classes and palette (below)
      rgb/NNNNNN.png       required: 8-bit colour PNG (.jpg also read); stored RGB, as any viewer shows it
      depth/NNNNNN.png     optional: 16-bit single-channel PNG, millimetres (depth_png_scale), 0 = invalid
      depth/NNNNNN.npy     optional, instead of the PNG: float32 (H, W) metres, 0 / NaN / inf = invalid
      labels/NNNNNN.png    optional: 8-bit single-channel PNG of class ids, 255 = ignore
      normals/NNNNNN.npy   optional: float32 (H, W, 3) unit vectors in the camera optical frame
                           (REP-103: x right, y down, z forward), all-zero = invalid
      normals/NNNNNN.png   optional, instead of the .npy: 16-bit 3-channel PNG whose channels, in RGB order,
                           hold round((n + 1) * 32767.5) for n = x, y, z; a pixel with all three 0 = invalid

``camera.yaml``::

    format_version: 1
    K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]  # pinhole intrinsics at the stored size, pixel centres at integers
    height: 480                                # stored image size (optional; read from the first image if absent)
    width: 640
    depth_png_scale: 0.001                     # metres per unit of the 16-bit depth PNGs
    class_names: [floor, wall, ...]            # optional: index = class id
    palette: [[152, 110, 62], ...]             # optional: RGB colour per class
    ignore_index: 255                          # label value of unlabelled pixels

A task folder that exists must hold a file for every frame in ``rgb/``; a missing folder means the task
is absent (e.g. a folder with only ``rgb/`` and ``depth/`` trains a depth-only model).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from torch.utils.data import Dataset

from mtl_perception.data.frame import Frame
from mtl_perception.data.transforms import Record, to_sample
from mtl_perception.tasks import IGNORE_INDEX

FORMAT_VERSION = 1
CAMERA_FILE = "camera.yaml"
DEPTH_PNG_SCALE = 0.001  # metres per unit in 16-bit depth PNGs written here
RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
NORMALS_PNG_SCALE = 32767.5


class FolderFormatError(ValueError):
    """A folder does not follow the documented format."""


def frame_name(index: int) -> str:
    return f"{index:06d}"


def write_dataset_meta(root: str | Path, K: np.ndarray, class_names: Sequence[str] | None = None,
                       palette: Sequence[Sequence[int]] | None = None, *, height: int | None = None,
                       width: int | None = None, ignore_index: int = IGNORE_INDEX) -> Path:
    """Write ``camera.yaml`` (intrinsics at the stored size, classes, palette); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if class_names is not None and palette is not None and len(class_names) != len(palette):
        raise ValueError(f"{len(class_names)} class names but {len(palette)} palette colours; give one colour per class")
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION,
                            "K": np.asarray(K, np.float64).round(6).tolist(),
                            "depth_png_scale": DEPTH_PNG_SCALE,
                            "ignore_index": int(ignore_index)}
    if height is not None and width is not None:
        meta["height"], meta["width"] = int(height), int(width)
    if class_names is not None:
        meta["class_names"] = [str(c) for c in class_names]
    if palette is not None:
        meta["palette"] = [[int(x) for x in colour] for colour in palette]
    path = root / CAMERA_FILE
    path.write_text(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None))
    return path


def encode_normals_png(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) float normals to a uint16 RGB array; invalid (all-zero) normals become (0, 0, 0)."""
    encoded = np.clip(np.round((normals + 1.0) * NORMALS_PNG_SCALE), 1, 65535).astype(np.uint16)
    encoded[~np.any(normals != 0, axis=-1)] = 0
    return encoded


def decode_normals_png(encoded: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_normals_png``: unit float32 normals, zeros where invalid."""
    normals = encoded.astype(np.float32) / np.float32(NORMALS_PNG_SCALE) - 1.0
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = np.any(encoded != 0, axis=-1, keepdims=True) & (norm > 0.5)
    return np.where(valid, normals / np.maximum(norm, 1e-6), np.float32(0.0)).astype(np.float32)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_frame(root: str | Path, index: int, frame: Frame, depth_format: str = "png", normals_format: str = "npy") -> None:
    """Write one frame as ``NNNNNN`` files under rgb/, depth/, labels/ and normals/.

    depth_format: ``png`` (uint16 millimetres; depths beyond 65.535 m become invalid) or ``npy`` (float32 metres).
    normals_format: ``npy`` (float32) or ``png`` (16-bit encoded, see the module docstring).
    """
    if depth_format not in ("png", "npy") or normals_format not in ("png", "npy"):
        raise ValueError(f"depth_format and normals_format must be 'png' or 'npy', got {depth_format!r}, {normals_format!r}")
    root = Path(root)
    name = frame_name(index)
    for sub in ("rgb", "depth", "labels", "normals"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _write_png(root / "rgb" / f"{name}.png", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    if depth_format == "png":
        millimetres = np.round(frame.depth / DEPTH_PNG_SCALE)
        millimetres[~np.isfinite(millimetres) | (millimetres > 65535) | (millimetres < 0)] = 0
        _write_png(root / "depth" / f"{name}.png", millimetres.astype(np.uint16))
    else:
        np.save(root / "depth" / f"{name}.npy", frame.depth.astype(np.float32))
    _write_png(root / "labels" / f"{name}.png", frame.labels.astype(np.uint8))
    if normals_format == "png":
        _write_png(root / "normals" / f"{name}.png", cv2.cvtColor(encode_normals_png(frame.normals), cv2.COLOR_RGB2BGR))
    else:
        np.save(root / "normals" / f"{name}.npy", frame.normals.astype(np.float32))


@dataclass(frozen=True)
class FolderMeta:
    """The contents of ``camera.yaml``."""

    K: np.ndarray
    height: int
    width: int
    depth_png_scale: float
    class_names: list[str] | None
    palette: list[list[int]] | None
    ignore_index: int


def _read_image(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FolderFormatError(f"cannot read image {path}; is it a valid PNG/JPEG?")
    return image


def _camera_schema() -> Any:
    """The shape of camera.yaml (pydantic): K a finite 3x3 matrix, sizes and scale in range, classes and palette."""
    global _CAMERA_SCHEMA
    if _CAMERA_SCHEMA is None:
        from typing import Annotated

        from pydantic import BaseModel, ConfigDict, Field, Strict

        from mtl_perception.schemas import MAX_CLASSES, Colour, Name

        Finite = Annotated[float, Field(allow_inf_nan=False)]
        Row = Annotated[list[Finite], Field(min_length=3, max_length=3)]

        class CameraFile(BaseModel):
            model_config = ConfigDict(extra="allow")
            format_version: Annotated[int, Strict(), Field(ge=1, le=1000)] = FORMAT_VERSION
            K: Annotated[list[Row], Field(min_length=3, max_length=3)]
            height: Annotated[int, Strict(), Field(ge=1, le=1 << 15)] | None = None
            width: Annotated[int, Strict(), Field(ge=1, le=1 << 15)] | None = None
            depth_png_scale: Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False)] = DEPTH_PNG_SCALE
            class_names: Annotated[list[Name], Field(max_length=MAX_CLASSES)] | None = None
            palette: Annotated[list[Colour], Field(max_length=MAX_CLASSES)] | None = None
            ignore_index: Annotated[int, Strict(), Field(ge=0, le=255)] = IGNORE_INDEX

        _CAMERA_SCHEMA = CameraFile
    return _CAMERA_SCHEMA


_CAMERA_SCHEMA: Any = None


def read_folder_meta(root: str | Path) -> FolderMeta:
    """Parse ``camera.yaml`` (bounded YAML, validated by a schema); the stored size comes from the first rgb image when the YAML lacks it."""
    from pydantic import ValidationError

    from mtl_perception.safeload import LoadError, yaml_load_file
    from mtl_perception.schemas import describe_errors

    root = Path(root)
    path = root / CAMERA_FILE
    if not path.is_file():
        raise FolderFormatError(f"{path} not found; a folder dataset needs camera.yaml with at least K (see docs/data_format.md)")
    try:
        raw = yaml_load_file(path, "camera file")
    except LoadError as exc:
        raise FolderFormatError(str(exc)) from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise FolderFormatError(f"{path} must be a mapping with K, height, width, class_names, palette (see docs/data_format.md), "
                                f"got a {type(raw).__name__}")
    version = raw.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise FolderFormatError(f"{path} has format_version {version}; this package reads up to {FORMAT_VERSION}")
    if "K" not in raw:
        raise FolderFormatError(f"{path}: K must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got None")
    try:
        meta = _camera_schema().model_validate(raw)
    except ValidationError as exc:
        hint = "K must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] of finite numbers: " if exc.errors()[0]["loc"][:1] == ("K",) else ""
        raise FolderFormatError(f"{path}: {hint}{describe_errors(exc)} (see docs/data_format.md)") from None
    K = np.asarray(meta.K, np.float64)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise FolderFormatError(f"{path}: K must have positive focal lengths fx={K[0, 0]}, fy={K[1, 1]}")
    if meta.height is not None and meta.width is not None:
        height, width = meta.height, meta.width
    else:
        names = _frame_files(root / "rgb", RGB_SUFFIXES)
        if not names:
            raise FolderFormatError(f"{root / 'rgb'} holds no images")
        height, width = _read_image(next(iter(names.values())), cv2.IMREAD_COLOR).shape[:2]
    class_names, palette = meta.class_names, meta.palette
    if class_names is not None and palette is not None and len(class_names) != len(palette):
        raise FolderFormatError(f"{path}: {len(class_names)} class names but {len(palette)} palette colours")
    return FolderMeta(K, height, width, float(meta.depth_png_scale), class_names, palette, int(meta.ignore_index))


def load_npy(path: Path, what: str, channels: int | None, limit_pixels: int = 1 << 26) -> np.ndarray:
    """A numeric .npy map as float32: (H, W) when ``channels`` is None, else (H, W, channels); FolderFormatError otherwise.

    Read without pickles, the header checked (shape, type, size) before the data is loaded.
    """
    expected = "(H, W)" if channels is None else f"(H, W, {channels})"
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (EOFError, ValueError, OSError) as exc:  # empty, truncated, pickled or not an .npy file
        reason = "empty" if path.stat().st_size == 0 else str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise FolderFormatError(f"{path} is not a readable .npy {what} map ({reason}); write float32 {expected} with numpy.save") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise FolderFormatError(f"{path} must hold a numeric {what} array {expected}, got {getattr(array, 'dtype', type(array))}")
    shape = array.shape
    if channels is None and len(shape) == 3 and shape[2] == 1:
        array = array[:, :, 0]
        shape = array.shape
    ok = len(shape) == 2 if channels is None else (len(shape) == 3 and shape[2] == channels)
    if not ok:
        raise FolderFormatError(f"{path} holds a {what} array of shape {shape}; it must be {expected}")
    if shape[0] * shape[1] > limit_pixels:
        raise FolderFormatError(f"{path} holds a {shape[1]}x{shape[0]} {what} map, more than {limit_pixels} pixels")
    return np.array(array, dtype=np.float32)


def _frame_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Frame name -> file for the files in ``folder`` with one of ``suffixes``."""
    if not folder.is_dir():
        return {}
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in suffixes:
            if path.stem in files:
                raise FolderFormatError(f"{folder} holds two files for frame {path.stem}: {files[path.stem].name} and {path.name}")
            files[path.stem] = path
    return files


class FolderDataset(Dataset):
    """Frames of a folder in the documented format, as samples (or records via ``read_record``).

    transform: turns a record into a sample; default ``to_sample`` (tensors at the stored size).
    indices: optional subset (positions in the sorted frame list), e.g. a held-out split.
    """

    TASK_FOLDERS = {"depth": (".png", ".npy"), "labels": (".png",), "normals": (".npy", ".png")}

    def __init__(self, root: str | Path, transform: Callable[[Record], Any] | None = None,
                 indices: Sequence[int] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FolderFormatError(f"folder dataset root {self.root} does not exist")
        self.meta = read_folder_meta(self.root)
        rgb = _frame_files(self.root / "rgb", RGB_SUFFIXES)
        if not rgb:
            raise FolderFormatError(f"{self.root / 'rgb'} holds no .png/.jpg frames")
        self.names = sorted(rgb)
        self.files: dict[str, dict[str, Path]] = {"rgb": rgb}
        for task, suffixes in self.TASK_FOLDERS.items():
            files = _frame_files(self.root / task, suffixes)
            if not files:
                continue
            missing = [n for n in self.names if n not in files]
            if missing:
                raise FolderFormatError(f"{self.root / task} lacks {len(missing)} of {len(self.names)} frames "
                                        f"(first: {missing[0]}); give every frame a {task} file or remove the folder")
            self.files[task] = files
        self.indices = list(range(len(self.names))) if indices is None else [int(i) for i in indices]
        if self.indices and not 0 <= min(self.indices) <= max(self.indices) < len(self.names):
            raise IndexError(f"indices must lie in [0, {len(self.names)}), got {min(self.indices)}..{max(self.indices)}")
        self.transform = transform if transform is not None else to_sample

    @property
    def tasks(self) -> list[str]:
        """Ground-truth maps present in this folder, among depth, labels and normals."""
        return [t for t in self.TASK_FOLDERS if t in self.files]

    def __len__(self) -> int:
        return len(self.indices)

    def read_record(self, position: int) -> Record:
        """The raw record of frame ``position`` (after ``indices``) at the stored size."""
        name = self.names[self.indices[position]]
        rgb = cv2.cvtColor(_read_image(self.files["rgb"][name], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] != (self.meta.height, self.meta.width):
            raise FolderFormatError(f"{self.files['rgb'][name]} is {rgb.shape[1]}x{rgb.shape[0]} but camera.yaml says "
                                    f"{self.meta.width}x{self.meta.height}; store every frame at the size K describes")
        record: Record = {"rgb": rgb, "K": self.meta.K.copy()}
        if "depth" in self.files:
            path = self.files["depth"][name]
            if path.suffix == ".npy":
                depth = load_npy(path, "depth", None)
                depth[~np.isfinite(depth) | (depth < 0)] = 0.0
            else:
                raw = _read_image(path, cv2.IMREAD_UNCHANGED)
                if raw.dtype != np.uint16 or raw.ndim != 2:
                    raise FolderFormatError(f"{path} must be a 16-bit single-channel PNG, got {raw.dtype} with shape {raw.shape}")
                depth = raw.astype(np.float32) * np.float32(self.meta.depth_png_scale)
            record["depth"] = depth
        if "labels" in self.files:
            labels = _read_image(self.files["labels"][name], cv2.IMREAD_UNCHANGED)
            if labels.ndim != 2 or labels.dtype != np.uint8:
                raise FolderFormatError(f"{self.files['labels'][name]} must be an 8-bit single-channel PNG of class ids, "
                                        f"got {labels.dtype} with shape {labels.shape}")
            if self.meta.ignore_index != IGNORE_INDEX:
                labels = np.where(labels == self.meta.ignore_index, IGNORE_INDEX, labels).astype(np.uint8)
            record["labels"] = labels
        if "normals" in self.files:
            path = self.files["normals"][name]
            if path.suffix == ".npy":
                normals = load_npy(path, "normals", 3)
            else:
                raw = _read_image(path, cv2.IMREAD_UNCHANGED)
                if raw.dtype != np.uint16 or raw.ndim != 3:
                    raise FolderFormatError(f"{path} must be a 16-bit 3-channel PNG of encoded normals")
                normals = decode_normals_png(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))
            record["normals"] = normals
        for key in ("depth", "labels", "normals"):
            if key in record and record[key].shape[:2] != rgb.shape[:2]:
                raise FolderFormatError(f"{key} of frame {name} is {record[key].shape[:2]} but its rgb is {rgb.shape[:2]}")
        return record

    def __getitem__(self, position: int) -> Any:
        if not 0 <= position < len(self):
            raise IndexError(f"frame {position} out of range for {len(self)} frames")
        return self.transform(self.read_record(position))
