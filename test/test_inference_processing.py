"""Pre-processing (and the NumPy post-processing oracle) against hand-computed cases: letterbox un-padding, focal rescaling, argmax/confidence."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata
from mtl_perception.inference.processing import make_transform, preprocess, to_rgb
from numpy_oracle import labels_and_confidence, postprocess, rescale_depth_for_camera


def make_meta(height: int = 64, width: int = 64, **overrides) -> ModelMetadata:
    values = dict(
        tasks=["depth", "semantic", "normals"], output_names=dict(OUTPUT_NAMES), class_names=["a", "b", "c"],
        palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]], input_height=height, input_width=width,
    )
    values.update(overrides)
    return ModelMetadata(**values)


def test_letterbox_transform_hand_computed():
    # 20x40 into 64x64: scale min(64/20, 64/40) = 1.6 -> content 32x64, 16 rows of padding above and below.
    t = make_transform(20, 40, make_meta(), "letterbox")
    assert (t.content_height, t.content_width, t.pad_top, t.pad_left, t.pad_bottom, t.pad_right) == (32, 64, 16, 0, 16, 0)
    assert t.scale_x == pytest.approx(1.6) and t.scale_y == pytest.approx(1.6)
    # tall image: 100x50 into 64x64: scale 0.64 -> content 64x32, 16 columns each side
    t = make_transform(100, 50, make_meta(), "letterbox")
    assert (t.content_height, t.content_width, t.pad_top, t.pad_left, t.pad_right) == (64, 32, 0, 16, 16)


def test_stretch_transform_scales_each_axis():
    t = make_transform(480, 640, make_meta(120, 160), "stretch")
    assert (t.scale_y, t.scale_x, t.pad_top, t.pad_left) == (0.25, 0.25, 0, 0)
    t = make_transform(100, 100, make_meta(64, 128), "stretch")
    assert (t.scale_y, t.scale_x) == (0.64, 1.28)


def test_preprocess_letterbox_pads_with_zero_and_normalises_content():
    meta = make_meta()
    image = np.full((20, 40, 3), (10, 128, 250), dtype=np.uint8)
    batch, t = preprocess(image, meta, "letterbox")
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    expected = (np.array([10, 128, 250]) / 255.0 - np.array(meta.mean)) / np.array(meta.std)
    content = batch[0, :, t.pad_top : t.pad_top + t.content_height, :]
    np.testing.assert_allclose(content, np.broadcast_to(expected[:, None, None], content.shape), atol=1e-5)
    assert np.all(batch[0, :, : t.pad_top] == 0) and np.all(batch[0, :, t.pad_top + t.content_height :] == 0)


def test_preprocess_bgr_model_gets_reversed_channels():
    meta = make_meta(channel_order="bgr", mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red
    batch, _ = preprocess(image, meta)
    assert batch[0, 2].min() == pytest.approx(1.0) and batch[0, 0].max() == 0.0


def test_postprocess_letterbox_unpadding_is_exact():
    meta = make_meta(tasks=["depth"], output_names={"depth": "depth"})
    t = make_transform(20, 40, meta, "letterbox")  # content rows 16..47
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    depth = np.full((1, 1, 64, 64), 99.0, dtype=np.float32)  # padding holds a value that must never leak
    depth[0, 0, 16:48, :] = 1.0 + 0.01 * xx[16:48] + 0.02 * (yy[16:48] - 16)  # a plane over the content
    out = {"depth": depth}
    model = postprocess(out, meta, t, "model")
    np.testing.assert_array_equal(model.depth, depth[0, 0, 16:48, :])
    full = postprocess(out, meta, t, "input")
    assert full.depth.shape == (20, 40) and full.depth.max() < 99.0
    # bilinear resampling of a plane is exact: model coordinate of source pixel centre x is (x + 0.5) * 1.6 - 0.5
    ys, xs = np.mgrid[0:20, 0:40].astype(np.float64)
    mx, my = (xs + 0.5) * 1.6 - 0.5, (ys + 0.5) * 1.6 - 0.5
    np.testing.assert_allclose(full.depth, 1.0 + 0.01 * mx + 0.02 * my, atol=1e-4)


def test_postprocess_labels_confidence_and_unit_normals():
    meta = make_meta(tasks=["semantic", "normals"], output_names={"semantic": "semantic_logits", "normals": "normals"})
    t = make_transform(32, 32, meta, "stretch")
    logits = np.zeros((1, 3, 64, 64), dtype=np.float32)
    logits[0, 1, :, :32] = math.log(3.0)  # left half: softmax [1/5, 3/5, 1/5]
    logits[0, 2, :, 32:] = math.log(4.0)  # right half: softmax [1/6, 1/6, 4/6]
    normals = np.zeros((1, 3, 64, 64), dtype=np.float32)
    normals[0, 2] = 2.0  # not unit length on purpose: postprocess re-normalises
    normals[0, 0, :, 32:] = 2.0
    pred = postprocess({"semantic": logits, "normals": normals}, meta, t, "model")
    assert pred.depth is None and pred.labels.dtype == np.uint8 and pred.confidence.dtype == np.float32
    assert np.all(pred.labels[:, :30] == 1) and np.all(pred.labels[:, 34:] == 2)
    np.testing.assert_allclose(pred.confidence[:, :30], 0.6, atol=1e-6)
    np.testing.assert_allclose(pred.confidence[:, 34:], 4 / 6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pred.normals, axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(pred.normals[0, 0], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(pred.normals[0, -1], [1 / math.sqrt(2), 0, 1 / math.sqrt(2)], atol=1e-6)
    # back to input resolution: 32x32, each pixel one of the two halves
    full = postprocess({"semantic": logits, "normals": normals}, meta, t, "input")
    assert full.labels.shape == (32, 32) and full.normals.shape == (32, 32, 3)
    np.testing.assert_allclose(np.linalg.norm(full.normals, axis=2), 1.0, atol=1e-5)


def test_labels_and_confidence_hand_case():
    logits = np.array([[[0.0, math.log(3.0)], [2.0, 2.0]]], dtype=np.float32)  # (1, 2, 2)
    labels, confidence = labels_and_confidence(logits)
    assert labels.tolist() == [[1, 0]]
    np.testing.assert_allclose(confidence, [[0.75, 0.5]], atol=1e-6)


def test_focal_rescaling_chain():
    # training camera: fx 100 px at the 120x160 network input; this camera: fx 600 px at 480x640 -> 150 at the input
    meta = make_meta(120, 160, focal_length_px=100.0, depth_scaling="focal")
    t = make_transform(480, 640, meta, "stretch")
    f_model = t.focal_at_model_input(600.0)
    assert f_model == pytest.approx(150.0)
    depth = np.array([[2.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(rescale_depth_for_camera(depth, f_model, meta), [[3.0, 6.0]])
    # anisotropic stretch: geometric mean of the scaled focal lengths
    t2 = make_transform(100, 100, make_meta(64, 128), "stretch")
    assert t2.focal_at_model_input(100.0, 100.0) == pytest.approx(math.sqrt(64.0 * 128.0))


def test_focal_rescaling_disabled_or_invalid():
    depth = np.ones((2, 2), dtype=np.float32)
    assert rescale_depth_for_camera(depth, 300.0, make_meta(focal_length_px=0.0)) is depth
    assert rescale_depth_for_camera(depth, 300.0, make_meta(focal_length_px=100.0, depth_scaling="none")) is depth
    with pytest.raises(ValueError, match="positive"):
        rescale_depth_for_camera(depth, 0.0, make_meta(focal_length_px=100.0))


def test_to_rgb_encodings():
    bgr = np.zeros((2, 3, 3), dtype=np.uint8)
    bgr[..., 0] = 7  # blue
    assert to_rgb(bgr, "bgr8")[0, 0].tolist() == [0, 0, 7]
    mono = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_rgb(mono, "mono8")
    assert rgb.shape == (2, 3, 3) and np.all(rgb[..., 0] == mono) and np.all(rgb[..., 2] == mono)
    assert to_rgb(np.full((2, 2), 0x1234, dtype=np.uint16), "mono16")[0, 0].tolist() == [0x12] * 3
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert to_rgb(rgba, "rgba8").shape == (2, 2, 3)
    with pytest.raises(ValueError, match="supported"):
        to_rgb(bgr, "nv21")  # yuv422 is converted (inference/encodings.py)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        to_rgb(mono, "rgb8")


def test_bad_arguments_are_clear_errors():
    meta = make_meta()
    with pytest.raises(ValueError, match="resize mode"):
        make_transform(10, 10, meta, "crop")
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess(np.zeros((10, 10), dtype=np.uint8), meta)
    with pytest.raises(ValueError, match="out_size"):
        postprocess({}, meta, make_transform(10, 10, meta), "native")
    with pytest.raises(ValueError, match=r"lack task\(s\) \['semantic', 'normals'\]"):
        postprocess({"depth": np.zeros((1, 1, 64, 64), np.float32)}, meta, make_transform(10, 10, meta))
