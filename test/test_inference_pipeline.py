"""The shared per-frame pipeline: task subsets, skipped confidence, focal-length depth rescaling."""
import numpy as np
import pytest

from mtl_perception.inference.pipeline import run_frame
from test_inference_processing import make_meta


def constant_outputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A network stand-in with known outputs: 2 m everywhere, class 1, normals facing the camera."""
    n, _, h, w = batch.shape
    logits = np.zeros((n, 3, h, w), np.float32)
    logits[:, 1] = 5.0
    normals = np.zeros((n, 3, h, w), np.float32)
    normals[:, 2] = -1.0
    return {"depth": np.full((n, 1, h, w), 2.0, np.float32), "semantic": logits, "normals": normals}


def test_full_pipeline_at_input_resolution():
    meta = make_meta(class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3, focal_length_px=0.0)
    rgb = np.zeros((48, 80, 3), np.uint8)
    result = run_frame(rgb, meta, constant_outputs, resize_mode="letterbox")
    p = result.predictions
    assert p.depth.shape == (48, 80) and np.allclose(p.depth, 2.0)
    assert (p.labels == 1).all() and p.confidence.shape == (48, 80)
    assert np.allclose(p.normals[..., 2], -1.0)
    assert set(result.seconds) == {"preprocess", "infer", "postprocess", "total"}


def test_task_subset_and_no_confidence_skip_work():
    meta = make_meta(class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3)
    result = run_frame(np.zeros((32, 32, 3), np.uint8), meta, constant_outputs, tasks=["semantic"], confidence=False)
    assert result.predictions.depth is None and result.predictions.normals is None
    assert result.predictions.confidence is None and (result.predictions.labels == 1).all()


def test_depth_follows_the_camera_focal_length():
    meta = make_meta(class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3, focal_length_px=50.0, depth_scaling="focal")
    # a 64x64 frame into a 64x64 model: the camera's fx at the model input is its own fx
    result = run_frame(np.zeros((64, 64, 3), np.uint8), meta, constant_outputs, resize_mode="stretch", camera_focal=(100.0, 100.0))
    assert np.allclose(result.predictions.depth, 4.0)  # twice the training focal length: twice the depth
    unscaled = run_frame(np.zeros((64, 64, 3), np.uint8), meta, constant_outputs, camera_focal=(100.0, 100.0), rescale_for_camera=False)
    assert np.allclose(unscaled.predictions.depth, 2.0)


def test_failed_inference_gives_no_predictions():
    result = run_frame(np.zeros((32, 32, 3), np.uint8), make_meta(), lambda batch: None)
    assert result.predictions is None and "infer" in result.seconds
