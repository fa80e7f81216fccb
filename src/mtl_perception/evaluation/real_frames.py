"""Real camera frames with metric depth and intrinsics, for the sim-to-real report.

One loader per on-disk layout; each returns ``RealFrame`` records (RGB, depth in metres with 0 = invalid,
the 3x3 intrinsics):

- the Metric3D demo layout (``test_annotations.json`` listing ``rgb``, ``depth``, ``cam_in`` = fx, fy, cx, cy
  and ``depth_scale`` per frame): ``nyu_demo`` (indoor) and ``kitti_demo`` (outdoor LiDAR);
- the slamcore RealSense layout (``color.txt`` / ``aligned_depth.txt`` of stamp and file, BGR colour PNGs,
  millimetre depth aligned to colour, OpenCV ``sensors.yaml`` with the colour camera's fx, cx, fy, cy);
- the labelled NYUv2 ``.mat`` (official test split, with its 40-class labels), through ``data/nyuv2.py``.

``realdata_frames`` finds the layouts it knows under a ``realdata/`` folder and says in one line why a
dataset was skipped. Outdoor frames are marked ``indoor=False``: they lie beyond the indoor model's depth range
and are reported apart from the indoor targets.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REALSENSE_CAMERA = "d400_color_optical_frame"  # the colour camera's entry in sensors.yaml
MAX_STAMP_GAP_S = 1.0 / 60.0  # a depth image pairs with the colour image at most half a frame (30 Hz) away


@dataclass(frozen=True, eq=False)
class RealFrame:
    """One real frame: ``rgb`` (H, W, 3) uint8 RGB, ``depth`` (H, W) float32 metres (0 = no measurement),
    ``K`` (3, 3) pinhole intrinsics at this size; ``labels40`` 0-based NYU40 ids (255 = unlabelled) or None."""

    dataset: str
    name: str
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    indoor: bool = True
    labels40: np.ndarray | None = None


@dataclass
class RegionOfInterest:
    """The ``roi`` fields of sensor_msgs/CameraInfo that ``inference/camera_info.py`` reads (none set)."""

    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False


@dataclass
class PinholeCameraInfo:
    """The sensor_msgs/CameraInfo fields the frame pipeline reads, for an undistorted pinhole camera."""

    width: int
    height: int
    k: list[float]
    p: list[float]
    binning_x: int = 0
    binning_y: int = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


def camera_info(frame: RealFrame) -> PinholeCameraInfo:
    """The camera info of a frame, as the node would receive it with the image."""
    k = np.asarray(frame.K, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    height, width = frame.depth.shape
    return PinholeCameraInfo(width, height, k.reshape(-1).tolist(), p.reshape(-1).tolist())


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(_read(path, cv2.IMREAD_COLOR)[:, :, ::-1])


def _depth(path: Path, units_per_metre: float, size: tuple[int, int]) -> np.ndarray:
    raw = _read(path, cv2.IMREAD_UNCHANGED)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"{path}: depth must be a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    if raw.shape != size:
        raise ValueError(f"{path}: depth is {raw.shape[1]}x{raw.shape[0]} but its colour image is {size[1]}x{size[0]}")
    return (raw.astype(np.float32) / np.float32(units_per_metre))


def metric3d_frames(folder: Path, indoor: bool) -> list[RealFrame]:
    """The frames of a Metric3D demo folder (``test_annotations.json`` beside ``rgb/`` and ``depth/``)."""
    entries = json.loads((folder / "test_annotations.json").read_text())["files"]
    frames = []
    for entry in entries:
        rgb = _rgb(folder / Path(entry["rgb"]).parent.name / Path(entry["rgb"]).name)
        depth = _depth(folder / Path(entry["depth"]).parent.name / Path(entry["depth"]).name,
                       float(entry["depth_scale"]), rgb.shape[:2])
        frames.append(RealFrame(folder.name, Path(entry["rgb"]).stem, rgb, depth, pinhole(*entry["cam_in"]), indoor))
    return frames


def _stamped(listing: Path) -> list[tuple[float, Path]]:
    """(stamp in seconds, file) of every line ``STAMP RELATIVE_PATH`` of a slamcore listing."""
    rows = [line.split() for line in listing.read_text().splitlines() if line.strip()]
    return [(float(stamp), listing.parent / name) for stamp, name in rows]


def realsense_intrinsics(sensors_yaml: Path, camera: str = REALSENSE_CAMERA) -> np.ndarray:
    """K of ``camera`` in a slamcore ``sensors.yaml`` (OpenCV FileStorage; intrinsics stored as fx, cx, fy, cy)."""
    storage = cv2.FileStorage(str(sensors_yaml), cv2.FILE_STORAGE_READ)
    try:
        values = storage.getNode(camera).getNode("intrinsics").mat()
    finally:
        storage.release()
    if values is None or values.size != 4:
        raise ValueError(f"{sensors_yaml}: no 4-value intrinsics for {camera}")
    fx, cx, fy, cy = (float(v) for v in values.reshape(-1))
    return pinhole(fx, fy, cx, cy)


def realsense_frames(folder: Path, indoor: bool) -> list[RealFrame]:
    """Colour frames of a slamcore RealSense folder, each with the aligned depth image nearest in time."""
    K = realsense_intrinsics(folder / "sensors.yaml")
    depths = _stamped(folder / "aligned_depth.txt")
    frames = []
    for stamp, colour_file in _stamped(folder / "color.txt"):
        gap, depth_file = min((abs(stamp - s), f) for s, f in depths)
        if gap > MAX_STAMP_GAP_S:
            continue
        rgb = _rgb(colour_file)  # OpenCV reads the BGR file; _rgb turns it to RGB
        frames.append(RealFrame(folder.name, colour_file.stem, rgb, _depth(depth_file, 1000.0, rgb.shape[:2]), K,
                                indoor))
    return frames


# the on-disk layouts: loader(folder, indoor) -> frames
LAYOUTS: dict[str, Callable[[Path, bool], list[RealFrame]]] = {"metric3d": metric3d_frames, "realsense": realsense_frames}
# realdata dataset (its folder's name) -> (folder under realdata/, layout, indoor)
REALDATA: dict[str, tuple[str, str, bool]] = {
    "nyu_demo": ("metric3d_demo/nyu_demo", "metric3d", True),
    "realsense_d435i": ("realsense_d435i", "realsense", True),
    "kitti_demo": ("metric3d_demo/kitti_demo", "metric3d", False),
}


def realdata_frames(root: Path) -> tuple[list[RealFrame], list[str]]:
    """Every frame with depth of the known datasets under ``root``, and one line per dataset skipped."""
    frames: list[RealFrame] = []
    skipped: list[str] = []
    for name, (relative, layout, indoor) in REALDATA.items():
        folder = root / relative
        if not folder.is_dir():
            skipped.append(f"{name}: {folder} is absent, skipped")
            continue
        frames.extend(LAYOUTS[layout](folder, indoor))
    return frames, skipped


class NyuTestFrames:
    """The official NYUv2 test frames of the labelled ``.mat`` with their 40-class labels, read one at a time."""

    def __init__(self, path: Path) -> None:
        from mtl_perception.data.nyuv2 import NYUv2Dataset

        self.dataset = NYUv2Dataset(path, "test", 40)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[RealFrame]:
        for position in range(len(self.dataset)):
            record = self.dataset.read_record(position)
            yield RealFrame("nyuv2_test", f"{int(self.dataset.indices[position]):04d}", record["rgb"], record["depth"],
                            record["K"], True, record["labels"])
