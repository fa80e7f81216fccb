"""NYUv2 evaluation as the literature scores it: predictions at the ground truth's size, 10 m cap, Eigen crop,
tasks the data lacks skipped with a note, normals from a folder of PNGs with a documented axis convention."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from mtl_perception.data.nyuv2 import NYUv2Dataset, parse_normals_axes, read_normals_png
from mtl_perception.training.validation import EvalProtocol, NativeTargets, align_outputs, apply_crop, evaluate_model
from mtl_perception.metrics import EIGEN_CROP_480x640, eigen_crop_mask
from shared_data import SKIP_HINT, shared_path

ROOT = Path(__file__).resolve().parents[1]
NYU_DEMO = shared_path("realdata") / "metric3d_demo" / "nyu_demo"
H, W = 48, 64  # the fake .mat's stored size


def write_mat(path: Path, frames: int = 3) -> None:
    rng = np.random.default_rng(0)
    depth = (1.0 + np.arange(H)[:, None] * 0.3 + np.zeros(W)[None, :]).astype(np.float32)  # 1 .. 15 m: some beyond the 10 m cap
    with h5py.File(path, "w") as handle:
        handle["images"] = rng.integers(0, 255, (frames, 3, W, H), dtype=np.uint8)
        handle["depths"] = np.broadcast_to(depth.T, (frames, W, H)).copy()
        handle["labels"] = np.zeros((frames, W, H), np.uint16)


class ConstantDepth(torch.nn.Module):
    """A 'network' predicting 2 m everywhere (and upward-facing normals) at 24x32."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        n = image.shape[0]
        normals = torch.zeros(n, 3, 24, 32)
        normals[:, 1] = -1.0
        return {"depth": torch.full((n, 1, 24, 32), 2.0), "normals": normals}


def test_native_resolution_scores_at_the_ground_truths_size_with_the_cap(tmp_path: Path) -> None:
    write_mat(tmp_path / "nyu.mat")
    native = NYUv2Dataset(tmp_path / "nyu.mat", "all", 13, NativeTargets(24, 32))
    sample = native[0]
    assert sample["image"].shape == (3, 24, 32) and sample["depth"].shape == (1, H, W)  # ground truth untouched
    loader = torch.utils.data.DataLoader(native, batch_size=2)
    capped = evaluate_model(ConstantDepth(), loader, ["depth"], 13, protocol=EvalProtocol("native", 1e-3, 10.0))
    uncapped = evaluate_model(ConstantDepth(), loader, ["depth"], 13, protocol=EvalProtocol("native"))
    gt = 1.0 + np.arange(H) * 0.3
    for result, kept in ((capped, gt[gt <= 10.0]), (uncapped, gt)):
        np.testing.assert_allclose(result["depth"]["abs_rel"], np.mean(np.abs(2.0 - kept) / kept), rtol=1e-6)


def test_eigen_crop_and_alignment() -> None:
    mask = eigen_crop_mask(480, 640)
    top, bottom, left, right = EIGEN_CROP_480x640
    assert mask.sum() == (bottom - top) * (right - left) and mask[top, left] and not mask[top - 1, left]
    batch = {"depth": torch.ones(1, 1, 480, 640), "semantic": torch.zeros(1, 480, 640, dtype=torch.int64), "image": torch.zeros(1, 3, 8, 8)}
    cropped = apply_crop(batch, "eigen")
    assert cropped["depth"].sum() == mask.sum() and (cropped["semantic"] == 255).sum() == mask.size - mask.sum()
    outputs = align_outputs({"depth": torch.ones(1, 1, 120, 160), "normals": torch.ones(1, 3, 120, 160)}, {"depth": batch["depth"], "normals": torch.ones(1, 3, 480, 640)})
    assert outputs["depth"].shape == (1, 1, 480, 640)
    np.testing.assert_allclose(outputs["normals"].norm(dim=1).numpy(), 1.0, rtol=1e-5)


def test_normals_folder_and_axes(tmp_path: Path) -> None:
    write_mat(tmp_path / "nyu.mat")
    folder = tmp_path / "normals"
    folder.mkdir()
    for index in range(3):  # OpenGL axes: (0, 1, 0) = up, stored as (n + 1) / 2 * 255; a zero pixel = no normal
        png = np.zeros((H, W, 3), np.uint8)
        png[:, :] = (128, 255, 128)
        png[0, 0] = 0
        cv2.imwrite(str(folder / f"{index + 1:04d}.png"), png[:, :, ::-1])
    assert parse_normals_axes("x,-y,-z") == ((0, 1, 2), (1.0, -1.0, -1.0))
    with pytest.raises(ValueError, match="once each"):
        parse_normals_axes("x,x,z")
    dataset = NYUv2Dataset(tmp_path / "nyu.mat", "all", 13, normals_dir=folder, normals_axes="x,-y,-z")
    assert dataset.tasks == ["depth", "semantic", "normals"]
    normals = dataset.read_record(1)["normals"]
    np.testing.assert_allclose(normals[5, 5], [0.0, -1.0, 0.0], atol=0.01)  # up in OpenGL = -y in the optical frame
    assert (normals[0, 0] == 0).all()
    assert read_normals_png(folder / "0001.png", parse_normals_axes("x,y,z"), (H, W))[5, 5, 1] > 0.99
    (folder / "extra.png").write_bytes((folder / "0001.png").read_bytes())
    with pytest.raises(ValueError, match="holds 4 PNG files"):
        NYUv2Dataset(tmp_path / "nyu.mat", "all", 13, normals_dir=folder)


@pytest.mark.skipif(not NYU_DEMO.is_dir(), reason=f"shared/realdata/metric3d_demo/nyu_demo is absent: {SKIP_HINT}")
def test_evaluate_real_nyu_frames_through_the_exported_model(tmp_path: Path) -> None:
    """Three real NYUv2 frames in the labelled .mat layout, the bundled model through ONNX Runtime: normals skipped, 480x640 scored."""
    images, depths = [], []
    for rgb_path, depth_path in zip(sorted((NYU_DEMO / "rgb").glob("*.jpg")), sorted((NYU_DEMO / "depth").glob("*.png"))):
        images.append(cv2.cvtColor(cv2.imread(str(rgb_path)), cv2.COLOR_BGR2RGB).transpose(2, 1, 0))
        depths.append((cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0).T)
    mat = tmp_path / "nyu_demo.mat"
    with h5py.File(mat, "w") as handle:
        handle["images"], handle["depths"] = np.stack(images), np.stack(depths)
        handle["labels"] = np.zeros((len(images), 640, 480), np.uint16)
    run = subprocess.run([sys.executable, "-m", "mtl_perception.cli", "evaluate", "--model", str(ROOT / "models" / "default.onnx"),
                          "--data", str(mat), "--out", str(tmp_path / "out"), "--sheet-rows", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "normals not scored" in run.stdout and "native resolution, depth 0.001..10 m" in run.stdout
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["frames"] == 3 and report["protocol"]["max_depth"] == 10.0 and set(report["metrics"]) == {"depth"}
    assert 0.0 < report["metrics"]["depth"]["abs_rel"] < 2.0
