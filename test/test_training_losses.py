"""Losses, schedules and the step sampler against hand-computed values."""
import math

import pytest
import torch

from mtl_perception.tasks import IGNORE_INDEX
from mtl_perception.training.losses import compute_losses, depth_loss, normals_loss, semantic_loss
from mtl_perception.training.sampler import StepBatchSampler
from mtl_perception.training.schedule import lr_factor


def test_log_l1_depth_skips_invalid_pixels():
    pred = torch.tensor([[[[2.0, 1.0], [4.0, 3.0]]]])
    gt = torch.tensor([[[[1.0, 1.0], [0.0, 3.0]]]])  # one invalid pixel (0)
    expected = (math.log(2.0) + 0.0 + 0.0) / 3
    assert depth_loss(pred, gt, "log_l1").item() == pytest.approx(expected, rel=1e-6)


def test_silog_is_scale_invariant_at_lambda_one():
    gt = torch.rand(1, 1, 4, 4) + 0.5
    assert depth_loss(gt * 3.0, gt, "silog", silog_lambda=1.0).item() == pytest.approx(0.0, abs=1e-3)


def test_semantic_ignores_ignore_index():
    logits = torch.tensor([[[[10.0, 0.0]], [[0.0, 10.0]]]])  # (1, 2, 1, 2): predicts class 0 then class 1
    gt = torch.tensor([[[0, IGNORE_INDEX]]])
    expected = -torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0].item()
    assert semantic_loss(logits, gt).item() == pytest.approx(expected, rel=1e-5)


def test_normals_losses_on_known_angles():
    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 3)
    gt = torch.zeros(1, 3, 1, 3)
    gt[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # 0 degrees
    gt[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # 90 degrees
    # pixel 2 stays all-zero: invalid
    assert normals_loss(pred, gt, "cosine").item() == pytest.approx(0.5, abs=1e-6)
    assert normals_loss(pred, gt, "angular").item() == pytest.approx(math.pi / 4, abs=1e-3)


def test_aux_outputs_are_resized_and_added():
    batch = {"depth": torch.full((1, 1, 8, 8), 2.0)}
    outputs = {"depth": torch.full((1, 1, 8, 8), 2.0), "aux/s8/depth": torch.full((1, 1, 2, 2), 2.0 * math.e)}
    losses = compute_losses(outputs, batch, ["depth"], aux_weight=0.5)
    assert losses["depth"].item() == pytest.approx(0.5, rel=1e-5)


def test_all_invalid_ground_truth_gives_zero_loss_with_gradient_path():
    pred = torch.ones(1, 1, 2, 2, requires_grad=True)
    loss = depth_loss(pred, torch.zeros(1, 1, 2, 2))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_warmup_then_cosine_and_poly():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    with pytest.raises(ValueError, match="valid"):
        lr_factor(0, 10, 0, "step")


def test_step_sampler_is_deterministic_resumable_and_rank_disjoint():
    full = list(StepBatchSampler(10, 3, total_steps=8, seed=5))
    resumed = list(StepBatchSampler(10, 3, total_steps=8, start_step=5, seed=5))
    assert resumed == full[5:]
    # every epoch is a permutation: the first 10 positions cover all indices
    flat = [i for batch in full for i in batch]
    assert sorted(flat[:10]) == list(range(10))
    rank0 = StepBatchSampler(10, 2, total_steps=4, seed=1, rank=0, world_size=2)
    rank1 = StepBatchSampler(10, 2, total_steps=4, seed=1, rank=1, world_size=2)
    for step in range(2):
        assert not set(rank0.batch_for_step(step)) & set(rank1.batch_for_step(step))
