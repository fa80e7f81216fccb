"""Transforms: intrinsics follow resize/crop/flip, normals' x flips, sample layout and dtypes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_perception.data.synthetic import Camera, Room, Scene, render_frame, render_scene, synthetic_intrinsics
from mtl_perception.data.transforms import (
    EvalTransform,
    TrainTransform,
    crop_record,
    frame_to_record,
    hflip_record,
    resize_record,
    to_sample,
)
from mtl_perception.tasks import IMAGENET_MEAN, IMAGENET_STD


def _back_project(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1)


def test_resize_scales_intrinsics_like_rendering_at_that_size() -> None:
    record = frame_to_record(render_frame(0, 96, 128))
    small = resize_record(record, 48, 64)
    np.testing.assert_allclose(small["K"], synthetic_intrinsics(48, 64), atol=1e-9)
    assert small["rgb"].shape == (48, 64, 3) and small["normals"].shape == (48, 64, 3)
    # Nearest sampling: resized maps only hold values of the original (no blended depths or labels).
    assert set(np.unique(small["labels"])) <= set(np.unique(record["labels"]))
    assert np.isin(small["depth"], record["depth"]).all()


def test_crop_shifts_principal_point_and_flip_mirrors_geometry() -> None:
    record = frame_to_record(render_frame(1, 48, 64))
    crop = crop_record(record, 4, 6, 40, 50)
    np.testing.assert_allclose(crop["K"][:2, 2], record["K"][:2, 2] - [6, 4])
    assert np.array_equal(crop["depth"], record["depth"][4:44, 6:56])
    with pytest.raises(ValueError, match="does not fit"):
        crop_record(record, 10, 0, 40, 64)
    flipped = hflip_record(record)
    assert np.array_equal(flipped["rgb"], record["rgb"][:, ::-1])
    np.testing.assert_array_equal(flipped["normals"][..., 0], -record["normals"][:, ::-1, 0])
    np.testing.assert_array_equal(flipped["normals"][..., 1:], record["normals"][:, ::-1, 1:])
    # The mirrored view back-projects to the mirrored point cloud (x negated).
    points = _back_project(record["depth"], record["K"])
    points_flipped = _back_project(flipped["depth"], flipped["K"])
    np.testing.assert_allclose(points_flipped, points[:, ::-1] * [-1.0, 1.0, 1.0], atol=1e-5)


def test_sample_layout_and_normalisation() -> None:
    record = frame_to_record(render_frame(2, 24, 32))
    sample = EvalTransform(24, 32)(record)
    assert set(sample) == {"image", "intrinsics", "depth", "semantic", "normals"}
    assert sample["image"].shape == (3, 24, 32) and sample["image"].dtype == torch.float32
    assert sample["depth"].shape == (1, 24, 32) and sample["depth"].dtype == torch.float32
    assert sample["semantic"].shape == (24, 32) and sample["semantic"].dtype == torch.int64
    assert sample["normals"].shape == (3, 24, 32) and sample["normals"].dtype == torch.float32
    assert sample["intrinsics"].shape == (3, 3) and sample["intrinsics"].dtype == torch.float32
    expected = (record["rgb"][5, 7, 1] / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert sample["image"][1, 5, 7].item() == pytest.approx(expected, abs=1e-6)
    # Missing tasks are simply absent.
    partial = to_sample({"rgb": record["rgb"], "K": record["K"], "depth": record["depth"]})
    assert set(partial) == {"image", "intrinsics", "depth"}


def test_train_transform_without_randomness_equals_eval() -> None:
    record = frame_to_record(render_frame(3, 60, 80))
    plain = TrainTransform(48, 64, scale_range=(1.0, 1.0), flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    a, b = plain(record, np.random.default_rng(0)), EvalTransform(48, 64)(record)
    for key in b:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    flip = TrainTransform(48, 64, scale_range=(1.0, 1.0), flip_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    c = flip(record, np.random.default_rng(0))
    assert torch.equal(c["normals"][0], -b["normals"][0].flip(-1))
    assert torch.equal(c["semantic"], b["semantic"].flip(-1))


def test_train_transform_keeps_depth_normals_and_intrinsics_consistent() -> None:
    """After random scale/crop/flip, the floor back-projected with the new K is still the plane the normals describe."""
    roll, pitch, cam_height = np.deg2rad(15.0), np.deg2rad(55.0), 1.3
    frame = render_scene(Scene(room=Room((100.0, 100.0, 50.0))), Camera.from_angles((50.0, 50.0, cam_height), 0.3, pitch, roll), 60, 80)
    record = frame_to_record(frame)
    transform = TrainTransform(48, 64, scale_range=(1.0, 1.25))
    flips = set()
    for seed in range(6):
        sample = transform(record, np.random.default_rng(seed))
        assert sample["image"].shape == (3, 48, 64)
        normal = sample["normals"][:, 0, 0].numpy().astype(np.float64)
        assert torch.allclose(sample["normals"], sample["normals"][:, :1, :1].expand(3, 48, 64))
        flips.add(bool(normal[0] > 0) != bool(frame.normals[0, 0, 0] > 0))
        points = _back_project(sample["depth"][0].numpy().astype(np.float64), sample["intrinsics"].numpy().astype(np.float64))
        points = points.reshape(-1, 3)
        centred = points - points.mean(axis=0)
        fitted = np.linalg.svd(centred, full_matrices=False)[2][-1]
        fitted *= np.sign(fitted @ normal)
        assert np.degrees(np.arccos(min(1.0, fitted @ normal))) < 1.0
        assert -(points @ normal).mean() == pytest.approx(cam_height, rel=0.01)
    assert flips == {True, False}


def test_train_transform_uses_torch_seed_when_no_rng_given() -> None:
    record = frame_to_record(render_frame(4, 40, 48))
    transform = TrainTransform(32, 40)
    torch.manual_seed(5)
    a = transform(record)
    torch.manual_seed(5)
    b = transform(record)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["intrinsics"], b["intrinsics"])
