"""Training and evaluation transforms: from a raw frame record to the SAMPLE dict every dataset returns.

A *record* is a dict of NumPy arrays at the stored resolution:
``rgb`` (H, W, 3) uint8 RGB and ``K`` (3, 3) intrinsics (always), and optionally ``depth`` (H, W) float32
metres (0 invalid), ``labels`` (H, W) integer class ids (``IGNORE_INDEX`` unlabelled) and ``normals``
(H, W, 3) float32 unit vectors in the camera optical frame (zeros invalid).

A *sample* is a dict of torch tensors at the network resolution:
``image`` float32 (3, H, W) normalised with the ImageNet mean/std, ``intrinsics`` float32 (3, 3), and for
each task the record has: ``depth`` float32 (1, H, W), ``semantic`` int64 (H, W), ``normals`` float32 (3, H, W).

Geometry follows the image: resizing scales the intrinsics, cropping shifts the principal point and a
horizontal flip mirrors it and negates the normals' x component. Depth keeps its metres under scaling
(the intrinsics record the zoom), so a training sample is always a geometrically true pinhole view.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from mtl_perception.data.frame import Frame
from mtl_perception.data.geometry import scale_intrinsics
from mtl_perception.tasks import DEPTH, IMAGENET_MEAN, IMAGENET_STD, NORMALS, SEMANTIC

Record = dict[str, np.ndarray]


def frame_to_record(frame: Frame) -> Record:
    """A record holding every field of a synthetic ``Frame``."""
    return {"rgb": frame.rgb, "K": frame.K, "depth": frame.depth, "labels": frame.labels, "normals": frame.normals}


def _check_record(record: Record) -> tuple[int, int]:
    if "rgb" not in record or "K" not in record:
        raise KeyError(f"a frame record needs 'rgb' and 'K', got keys {sorted(record)}")
    height, width = record["rgb"].shape[:2]
    for key in ("depth", "labels", "normals"):
        if key in record and record[key].shape[:2] != (height, width):
            raise ValueError(f"record '{key}' is {record[key].shape[:2]} but 'rgb' is {(height, width)}; all maps must share one size")
    return height, width


def resize_record(record: Record, height: int, width: int) -> Record:
    """Resize to (height, width): image bilinear, depth/labels/normals nearest, intrinsics scaled."""
    in_h, in_w = _check_record(record)
    if (in_h, in_w) == (height, width):
        return dict(record)
    size = (width, height)
    out: Record = {"rgb": cv2.resize(record["rgb"], size, interpolation=cv2.INTER_LINEAR),
                   "K": scale_intrinsics(record["K"], width / in_w, height / in_h)}
    for key in ("depth", "labels", "normals"):
        if key in record:
            out[key] = cv2.resize(record[key], size, interpolation=cv2.INTER_NEAREST_EXACT)
    return out


def crop_record(record: Record, top: int, left: int, height: int, width: int) -> Record:
    """Crop a (height, width) window at (top, left); the principal point shifts by the offset."""
    in_h, in_w = _check_record(record)
    if top < 0 or left < 0 or top + height > in_h or left + width > in_w:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit a {in_h}x{in_w} frame")
    out: Record = {key: value[top:top + height, left:left + width] for key, value in record.items() if key != "K"}
    K = np.array(record["K"], np.float64)
    K[0, 2] -= left
    K[1, 2] -= top
    out["K"] = K
    return out


def hflip_record(record: Record) -> Record:
    """Mirror left-right: the principal point mirrors and the normals' x component changes sign."""
    _, width = _check_record(record)
    out: Record = {key: value[:, ::-1] for key, value in record.items() if key != "K"}
    if "normals" in out:
        out["normals"] = out["normals"] * np.array([-1.0, 1.0, 1.0], np.float32)
    K = np.array(record["K"], np.float64)
    K[0, 2] = (width - 1) - K[0, 2]
    out["K"] = K
    return out


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x]; uint8 RGB in and out."""
    image = rgb.astype(np.float32) / 255.0
    image *= rng.uniform(1 - brightness, 1 + brightness)
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = grey.mean()
    image = (image - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = grey[..., None] + (image - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_sample(record: Record, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> dict[str, torch.Tensor]:
    """Tensors of a record at its current size (see the module docstring for the layout)."""
    _check_record(record)
    image = (record["rgb"].astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    sample = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
              "intrinsics": torch.from_numpy(np.asarray(record["K"], np.float32).copy())}
    if "depth" in record:
        depth = np.asarray(record["depth"], np.float32)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0))
        sample[DEPTH] = torch.from_numpy(np.ascontiguousarray(depth[None]))
    if "labels" in record:
        sample[SEMANTIC] = torch.from_numpy(np.ascontiguousarray(record["labels"], dtype=np.int64))
    if "normals" in record:
        normals = np.asarray(record["normals"], np.float32)
        sample[NORMALS] = torch.from_numpy(np.ascontiguousarray(normals.transpose(2, 0, 1)))
    return sample


def torch_seeded_rng() -> np.random.Generator:
    """A NumPy generator seeded from torch's RNG (follows torch.manual_seed and DataLoader worker seeds)."""
    return np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))


class EvalTransform:
    """Resize a record to the network size and convert it to a sample."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, record: Record) -> dict[str, torch.Tensor]:
        return to_sample(resize_record(record, self.height, self.width))


class TrainTransform:
    """Random scale, crop, horizontal flip and colour jitter, then conversion to a sample.

    The frame is first resized so that it just covers (height, width), then zoomed by a factor drawn from
    ``scale_range`` and cropped at a random offset; so scale 1 keeps the full field of view.
    """

    def __init__(self, height: int, width: int, scale_range: tuple[float, float] = (1.0, 1.25), flip_prob: float = 0.5,
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        if not 1.0 <= scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 1 <= low <= high, got {scale_range}")
        self.height, self.width = height, width
        self.scale_range = scale_range
        self.flip_prob = flip_prob
        self.jitter = (brightness, contrast, saturation)

    def __call__(self, record: Record, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        rng = torch_seeded_rng() if rng is None else rng
        in_h, in_w = _check_record(record)
        cover = max(self.height / in_h, self.width / in_w)
        zoom = cover * rng.uniform(*self.scale_range)
        new_h = max(self.height, int(round(in_h * zoom)))
        new_w = max(self.width, int(round(in_w * zoom)))
        record = resize_record(record, new_h, new_w)
        top = int(rng.integers(0, new_h - self.height + 1))
        left = int(rng.integers(0, new_w - self.width + 1))
        record = crop_record(record, top, left, self.height, self.width)
        if rng.random() < self.flip_prob:
            record = hflip_record(record)
        record["rgb"] = color_jitter(record["rgb"], rng, *self.jitter)
        return to_sample(record)
