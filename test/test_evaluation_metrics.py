"""Metrics against hand-computed values, accumulation, distributed state and Δm."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_perception.metrics import (
    HEADLINE,
    DepthMetrics,
    MultiTaskMetrics,
    NormalsMetrics,
    SemanticMetrics,
    delta_m,
    flatten_metrics,
    to_numpy,
)

torch.set_num_threads(1)


def assert_results_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-9, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- depth

GT_DEPTH = np.array([[[[1.0, 2.0, 4.0], [0.0, np.nan, 5.0]]]])  # (1, 1, 2, 3); 0 and NaN are invalid
PRED_DEPTH = np.array([[[[1.5, 2.0, 2.0], [3.0, 3.0, 5.0]]]])


def test_depth_hand_computed_with_invalid_pixels_excluded() -> None:
    metrics = DepthMetrics()
    metrics.update(PRED_DEPTH, GT_DEPTH)
    # valid pairs (gt, pred): (1, 1.5), (2, 2), (4, 2), (5, 5)
    expected = {
        "abs_rel": (0.5 / 1 + 0 + 2 / 4 + 0) / 4,
        "sq_rel": (0.25 / 1 + 0 + 4 / 4 + 0) / 4,
        "rmse": math.sqrt((0.25 + 4) / 4),
        "rmse_log": math.sqrt((math.log(1.5) ** 2 + math.log(0.5) ** 2) / 4),
        "delta1": 2 / 4,  # ratios 1.5, 1, 2, 1
        "delta2": 3 / 4,  # 1.5 < 1.5625
        "delta3": 3 / 4,  # 2 >= 1.953125
    }
    assert_results_close(metrics.compute(), expected)


def test_depth_max_depth_excludes_far_ground_truth() -> None:
    metrics = DepthMetrics(max_depth=4.5)
    metrics.update(PRED_DEPTH, GT_DEPTH)
    assert metrics.compute()["abs_rel"] == pytest.approx((0.5 + 0 + 0.5) / 3)


def test_depth_perfect_prediction() -> None:
    gt = np.array([[[[0.5, 2.0], [3.0, 7.0]]]])
    metrics = DepthMetrics()
    metrics.update(gt.copy(), gt)
    results = metrics.compute()
    assert results["abs_rel"] == 0 and results["rmse"] == 0 and results["rmse_log"] == 0
    assert results["delta1"] == 1


def test_depth_non_finite_prediction_on_valid_pixel_is_an_error_but_not_on_invalid() -> None:
    metrics = DepthMetrics()
    pred = PRED_DEPTH.copy()
    pred[0, 0, 1, 0] = np.nan  # under gt 0: ignored
    metrics.update(pred, GT_DEPTH)
    pred[0, 0, 0, 0] = np.nan  # under gt 1: error
    with pytest.raises(ValueError, match="non-finite"):
        metrics.update(pred, GT_DEPTH)


def test_depth_shape_mismatch_and_empty() -> None:
    metrics = DepthMetrics()
    with pytest.raises(ValueError, match="shape"):
        metrics.update(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 3)))
    assert all(math.isnan(v) for v in metrics.compute().values())


# ---------------------------------------------------------------- semantic

GT_LABELS = np.array([[[0, 0, 1], [1, 255, 2]]])  # (1, 2, 3); 255 is ignored
PRED_LABELS = np.array([[[0, 1, 1], [1, 2, 0]]])


def one_hot_logits(ids: np.ndarray, num_classes: int) -> np.ndarray:
    return np.moveaxis(np.eye(num_classes)[ids], -1, 1)  # (N, C, H, W)


def test_semantic_hand_computed_ignore_and_absent_class() -> None:
    metrics = SemanticMetrics(num_classes=4, class_names=["a", "b", "c", "d"])
    metrics.update(PRED_LABELS, GT_LABELS)
    # counted (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the ignored pixel's prediction 2 is not counted
    assert metrics.confusion.sum() == 5 and metrics.confusion[:, 2].sum() == 0
    results = metrics.compute()
    assert results["iou/a"] == pytest.approx(1 / 3)  # TP 1, union 2 + 2 - 1
    assert results["iou/b"] == pytest.approx(2 / 3)  # TP 2, union 2 + 3 - 2
    assert results["iou/c"] == 0.0  # TP 0, union 1
    assert math.isnan(results["iou/d"])  # absent from gt and prediction
    assert results["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)  # "d" left out of the mean
    assert results["pixel_acc"] == pytest.approx(3 / 5)


def test_semantic_logits_numpy_and_torch_equal_ids() -> None:
    from_ids = SemanticMetrics(4)
    from_ids.update(PRED_LABELS, GT_LABELS)
    from_numpy_logits = SemanticMetrics(4)
    from_numpy_logits.update(one_hot_logits(PRED_LABELS, 4), GT_LABELS)
    from_torch_logits = SemanticMetrics(4)
    from_torch_logits.update(torch.from_numpy(one_hot_logits(PRED_LABELS, 4)).float(), torch.from_numpy(GT_LABELS))
    np.testing.assert_array_equal(from_numpy_logits.confusion, from_ids.confusion)
    np.testing.assert_array_equal(from_torch_logits.confusion, from_ids.confusion)


def test_semantic_perfect_prediction() -> None:
    metrics = SemanticMetrics(3)
    metrics.update(np.where(GT_LABELS == 255, 0, GT_LABELS), GT_LABELS)
    results = metrics.compute()
    assert results["miou"] == 1.0 and results["pixel_acc"] == 1.0


def test_semantic_rejects_bad_inputs() -> None:
    metrics = SemanticMetrics(3)
    with pytest.raises(ValueError, match="ground-truth class ids"):
        metrics.update(np.zeros((1, 2, 2), int), np.array([[[0, 1], [2, 7]]]))
    with pytest.raises(ValueError, match="channels"):
        metrics.update(np.zeros((1, 5, 2, 2)), np.zeros((1, 2, 2), int))
    with pytest.raises(ValueError, match="class names"):
        SemanticMetrics(3, class_names=["a"])


# ---------------------------------------------------------------- normals


def normals_batch(vectors: list[tuple[float, float, float]]) -> np.ndarray:
    """(1, 3, 1, W) array holding one vector per pixel."""
    return np.asarray(vectors, dtype=np.float64).T[None, :, None, :]


def test_normals_hand_computed_with_invalid_pixels() -> None:
    twenty = math.radians(20)
    gt = normals_batch([(0, 0, 1), (0, 0, 1), (1, 0, 0), (0, 0, 0), (np.nan, 0, 1)])
    pred = normals_batch([(0, 0, 5), (math.sin(twenty), 0, math.cos(twenty)), (0, 1, 0), (1, 0, 0), (0, 0, 1)])
    metrics = NormalsMetrics()
    metrics.update(pred, gt)  # errors 0 (unnormalised prediction), 20, 90; two invalid pixels
    results = metrics.compute()
    assert results["mean"] == pytest.approx(110 / 3)
    assert results["median"] == pytest.approx(20.0)
    assert results["within_11_25"] == pytest.approx(100 / 3)
    assert results["within_22_5"] == pytest.approx(200 / 3)
    assert results["within_30"] == pytest.approx(200 / 3)


def test_normals_known_90_degrees_and_perfect() -> None:
    gt = normals_batch([(0, 0, 1), (0, 1, 0)])
    metrics = NormalsMetrics()
    metrics.update(normals_batch([(1, 0, 0), (0, 0, -1)]), gt)
    results = metrics.compute()
    assert results["mean"] == pytest.approx(90.0) and results["median"] == pytest.approx(90.0)
    assert results["within_30"] == 0.0
    metrics.reset()
    metrics.update(gt.copy(), gt)
    results = metrics.compute()
    assert results["mean"] == pytest.approx(0.0, abs=1e-6) and results["within_11_25"] == 100.0


def test_normals_even_count_median_averages_middle_errors() -> None:
    metrics = NormalsMetrics()
    metrics.update(normals_batch([(0, 0, 1), (1, 0, 0)]), normals_batch([(0, 0, 1), (0, 0, 1)]))
    assert metrics.compute()["median"] == pytest.approx(45.0)


def random_unit_normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    vectors = rng.normal(size=shape)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_normals_histogram_median_within_a_bin_of_exact_median() -> None:
    rng = np.random.default_rng(0)
    pred, gt = random_unit_normals(rng, (2, 3, 16, 16)), random_unit_normals(rng, (2, 3, 16, 16))
    metrics = NormalsMetrics()
    metrics.update(pred, gt)
    errors = NormalsMetrics.angular_error(np.moveaxis(pred, 1, -1).reshape(-1, 3), np.moveaxis(gt, 1, -1).reshape(-1, 3))
    assert abs(metrics.compute()["median"] - np.median(errors)) <= NormalsMetrics.BIN_WIDTH
    assert metrics.compute()["mean"] == pytest.approx(errors.mean())


def test_normals_channel_last_equals_channel_first() -> None:
    rng = np.random.default_rng(1)
    pred, gt = random_unit_normals(rng, (1, 3, 4, 5)), random_unit_normals(rng, (1, 3, 4, 5))
    first, last = NormalsMetrics(), NormalsMetrics()
    first.update(pred, gt)
    last.update(np.moveaxis(pred, 1, -1), np.moveaxis(gt, 1, -1), channel_axis=-1)
    np.testing.assert_array_equal(first.state(), last.state())


# ---------------------------------------------------------------- accumulation and distributed state


def random_batch(rng: np.random.Generator, num_classes: int = 3) -> tuple[dict, dict]:
    gt_depth = rng.uniform(0.5, 5.0, (2, 1, 6, 7))
    gt_depth[:, :, 0, :2] = 0.0
    gt_labels = rng.integers(0, num_classes, (2, 6, 7))
    gt_labels[:, 1, :3] = 255
    gt_normals = random_unit_normals(rng, (2, 3, 6, 7))
    gt_normals[:, :, 2, 2] = 0.0
    outputs = {
        "depth": gt_depth + rng.uniform(0.05, 1.0, gt_depth.shape),
        "semantic": rng.normal(size=(2, num_classes, 6, 7)),
        "normals": random_unit_normals(rng, (2, 3, 6, 7)),
        "aux/s8/depth": np.zeros(1),  # training-mode extras are ignored
    }
    return outputs, {"depth": gt_depth, "semantic": gt_labels, "normals": gt_normals}


def concat(first: dict, second: dict) -> dict:
    return {task: np.concatenate([first[task], second[task]]) for task in ("depth", "semantic", "normals")}


def assert_nested_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for task in expected:
        assert_results_close(actual[task], expected[task])


def test_two_updates_equal_one_update_on_concatenation_and_state_sums() -> None:
    rng = np.random.default_rng(2)
    (out_a, gt_a), (out_b, gt_b) = random_batch(rng), random_batch(rng)
    tasks = ["depth", "semantic", "normals"]

    def fresh() -> MultiTaskMetrics:
        return MultiTaskMetrics(tasks, num_classes=3, class_names=["x", "y", "z"])

    sequential, combined, only_a, only_b = fresh(), fresh(), fresh(), fresh()
    sequential.update(out_a, gt_a)
    sequential.update(out_b, gt_b)
    combined.update(concat(out_a, out_b), concat(gt_a, gt_b))
    only_a.update(out_a, gt_a)
    only_b.update(out_b, gt_b)
    assert_nested_close(sequential.compute(), combined.compute())

    reduced = fresh()
    reduced.load_state(only_a.state() + only_b.state())  # what an all-reduce SUM does
    assert_nested_close(reduced.compute(), sequential.compute())

    restored = fresh()
    restored.load_state(torch.from_numpy(sequential.state()))
    np.testing.assert_array_equal(restored.state(), sequential.state())
    assert sequential.state().dtype == np.float64
    expected_size = DepthMetrics.STATE_SIZE + 3 * 3 + NormalsMetrics.STATE_SIZE
    assert sequential.state().shape == (expected_size,)


def test_multitask_matches_single_accumulators_and_accepts_torch() -> None:
    rng = np.random.default_rng(3)
    outputs, batch = random_batch(rng)
    multi = MultiTaskMetrics(["normals", "depth"], num_classes=0)
    assert multi.tasks == ("depth", "normals")
    multi.update({k: torch.from_numpy(v).float() for k, v in outputs.items()}, {k: torch.from_numpy(v) for k, v in batch.items()})
    depth, normals = DepthMetrics(), NormalsMetrics()
    depth.update(outputs["depth"].astype(np.float32), batch["depth"])
    normals.update(outputs["normals"].astype(np.float32), batch["normals"])
    results = multi.compute()
    assert results.keys() == {"depth", "normals"}
    assert_results_close(results["depth"], depth.compute())
    assert_results_close(results["normals"], normals.compute())
    assert flatten_metrics(results)["depth/rmse"] == results["depth"]["rmse"]


def test_multitask_errors_name_the_problem() -> None:
    multi = MultiTaskMetrics(["depth", "semantic"], num_classes=3)
    with pytest.raises(KeyError, match="semantic"):
        multi.update({"depth": np.ones((1, 1, 2, 2))}, {"depth": np.ones((1, 1, 2, 2)), "semantic": np.zeros((1, 2, 2), int)})
    with pytest.raises(ValueError, match="expects"):
        multi.load_state(np.zeros(3))


def test_state_round_trip_single_accumulators() -> None:
    for metrics, other in ((DepthMetrics(), DepthMetrics()), (SemanticMetrics(4), SemanticMetrics(4))):
        if isinstance(metrics, DepthMetrics):
            metrics.update(PRED_DEPTH, GT_DEPTH)
        else:
            metrics.update(PRED_LABELS, GT_LABELS)
        other.load_state(metrics.state())
        np.testing.assert_equal(other.compute(), metrics.compute())


def test_to_numpy_handles_half_tensors_with_grad() -> None:
    tensor = torch.ones(2, 2, dtype=torch.bfloat16, requires_grad=True)
    array = to_numpy(tensor)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32


# ---------------------------------------------------------------- Δm


SINGLE = {"depth": {"rmse": 1.0}, "semantic": {"miou": 0.5}, "normals": {"mean": 20.0}}
MULTI = {"depth": {"rmse": 0.9}, "semantic": {"miou": 0.55}, "normals": {"mean": 22.0}}


def test_delta_m_hand_computed() -> None:
    # depth 10% lower RMSE (+10), mIoU 10% higher (+10), normals 10% larger error (-10)
    assert delta_m(MULTI, SINGLE, ["depth", "semantic", "normals"]) == pytest.approx(10 / 3)
    assert delta_m(MULTI, SINGLE) == pytest.approx(10 / 3)
    assert delta_m(MULTI, SINGLE, ["normals", "depth"]) == pytest.approx(0.0)
    assert delta_m(SINGLE, SINGLE) == 0.0
    assert HEADLINE["depth"].lower_is_better and not HEADLINE["semantic"].lower_is_better


def test_delta_m_rejects_missing_or_zero_baseline() -> None:
    with pytest.raises(KeyError, match="normals/mean"):
        delta_m(MULTI, {"depth": {"rmse": 1.0}, "semantic": {"miou": 0.5}})
    with pytest.raises(ValueError, match="baseline"):
        delta_m(MULTI, {**SINGLE, "semantic": {"miou": 0.0}})
