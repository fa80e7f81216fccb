"""Loss weighting schemes against hand-computed cases."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mtl_perception.training.weighting import (FAMO, WEIGHTINGS, AlignedMTL, DynamicWeightAveraging, FixedWeighting, GradNorm,
                                               UncertaintyWeighting, build_weighting)
from two_ranks import finish_rank, join_group, run_two_ranks

TASKS = ["depth", "semantic"]


def test_registry_and_option_errors() -> None:
    assert set(WEIGHTINGS) == {"fixed", "uncertainty", "dwa", "gradnorm", "famo", "aligned_mtl"}
    assert isinstance(build_weighting("dwa", TASKS, {}, dwa_window=3), DynamicWeightAveraging)
    with pytest.raises(ValueError, match="valid: \\['dwa_temperature', 'dwa_window'\\]"):
        build_weighting("dwa", TASKS, {}, dwa_windw=3)
    with pytest.raises(ValueError, match="unknown loss_weighting 'nope'"):
        build_weighting("nope", TASKS, {})
    with pytest.raises(ValueError, match="positive integer"):
        build_weighting("dwa", TASKS, {}, dwa_window=2.5)
    with pytest.raises(ValueError, match="must be positive"):
        build_weighting("uncertainty", TASKS, {"depth": 0.0})
    with pytest.raises(ValueError, match="famo_lr must be positive"):
        build_weighting("famo", TASKS, {}, famo_lr=0.0)
    with pytest.raises(ValueError, match="valid: \\['famo_lr', 'famo_weight_decay'\\]"):
        build_weighting("famo", TASKS, {}, famo_gamma=0.1)
    with pytest.raises(ValueError, match="valid: \\[\\]"):
        build_weighting("aligned_mtl", TASKS, {}, tolerance=1e-6)


def test_fixed_weights() -> None:
    scheme = FixedWeighting(TASKS, {"depth": 2.0, "semantic": 0.5})
    total = scheme({"depth": torch.tensor(3.0), "semantic": torch.tensor(4.0)}, [])
    assert float(total.detach()) == pytest.approx(2.0 * 3.0 + 0.5 * 4.0)


def test_uncertainty_total_and_gradient_for_known_log_variances() -> None:
    scheme = UncertaintyWeighting(TASKS, {"depth": 1.0, "semantic": 1.0})
    assert scheme.weights() == {"depth": 1.0, "semantic": 1.0}
    with torch.no_grad():
        scheme.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    total = scheme({"depth": torch.tensor(2.0), "semantic": torch.tensor(0.5)}, [])
    # exp(-0) * 2 + 0  +  exp(-log 2) * 0.5 + log 2
    assert float(total.detach()) == pytest.approx(2.0 + 0.25 + math.log(2.0), rel=1e-6)
    total.backward()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L
    assert scheme.log_vars.grad.tolist() == pytest.approx([1 - 2.0, 1 - 0.25], rel=1e-6)
    assert scheme.weights()["semantic"] == pytest.approx(0.5)


def test_uncertainty_starts_at_configured_weights() -> None:
    scheme = UncertaintyWeighting(TASKS, {"depth": 4.0, "semantic": 0.25})
    assert scheme.weights() == pytest.approx({"depth": 4.0, "semantic": 0.25})


def test_dwa_weights_from_known_loss_history() -> None:
    scheme = DynamicWeightAveraging(TASKS, {}, dwa_window=2, dwa_temperature=2.0)
    history = [(4.0, 1.0), (2.0, 1.0), (1.5, 1.0), (1.5, 1.0)]  # window averages: (3, 1) then (1.5, 1)
    for step, (depth, semantic) in enumerate(history):
        assert scheme.weights() == {"depth": 1.0, "semantic": 1.0}, f"weights must stay 1 before two full windows (step {step})"
        scheme.after_step({"depth": depth, "semantic": semantic})
    ratios = [1.5 / 3.0, 1.0 / 1.0]
    exps = [math.exp(r / 2.0) for r in ratios]
    expected = [2 * e / sum(exps) for e in exps]
    weights = scheme.weights()
    assert [weights["depth"], weights["semantic"]] == pytest.approx(expected, rel=1e-9)
    assert sum(weights.values()) == pytest.approx(2.0)
    total = scheme({"depth": torch.tensor(1.0), "semantic": torch.tensor(2.0)}, [])
    assert float(total.detach()) == pytest.approx(expected[0] * 1.0 + expected[1] * 2.0, rel=1e-6)


def test_dwa_history_survives_state_dict_round_trip() -> None:
    scheme = DynamicWeightAveraging(TASKS, {}, dwa_window=1)
    for depth in (2.0, 1.0, 3.0):
        scheme.after_step({"depth": depth, "semantic": 1.0})
    restored = DynamicWeightAveraging(TASKS, {}, dwa_window=1)
    restored.load_state_dict(scheme.state_dict())
    assert restored.weights() == scheme.weights()
    assert restored.weights()["depth"] > 1.0, "depth's loss rose (1 -> 3), so its weight must exceed 1"


class LinearTasks(torch.nn.Module):
    """A one-parameter 'network' whose task losses are ``slope_t * W``: ||dL_t/dW|| = |slope_t|."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = torch.nn.Parameter(torch.tensor([1.0]))

    def forward(self, slopes: tuple[float, float]) -> dict[str, torch.Tensor]:
        return {t: (s * self.shared).sum() for t, s in zip(TASKS, slopes)}


def test_gradnorm_step_matches_hand_computation() -> None:
    net = LinearTasks()
    scheme = GradNorm(TASKS, {}, gradnorm_alpha=1.5)
    losses = net((4.0, 1.0))
    total = scheme(losses, [net.shared])
    # G = (4, 1), mean 2.5, loss ratios 1 -> target 2.5 each; L_grad = 1.5 + 1.5
    assert float(total.detach()) == pytest.approx(4.0 + 1.0 + 3.0)
    total.backward()
    assert scheme.loss_weights.grad.tolist() == pytest.approx([4.0, -1.0]), "dL_grad/dw_t = sign(G_t - target) * ||grad L_t||"
    assert net.shared.grad.tolist() == pytest.approx([1.0 * 4.0 + 1.0 * 1.0]), "the network sees only sum w_t L_t"
    torch.optim.SGD(scheme.parameters(), lr=0.1).step()
    scheme.after_step({t: float(v.detach()) for t, v in losses.items()})
    weights = scheme.weights()
    assert [weights["depth"], weights["semantic"]] == pytest.approx([2 * 0.6 / 1.7, 2 * 1.1 / 1.7], rel=1e-6)
    assert sum(weights.values()) == pytest.approx(2.0)


def test_gradnorm_favours_the_task_that_trains_slower() -> None:
    net = LinearTasks()
    scheme = GradNorm(TASKS, {}, gradnorm_alpha=1.5)
    with torch.no_grad():
        scheme.initial_losses.copy_(torch.tensor([2.0, 1.0]))
        scheme.has_initial.fill_(True)
    losses = net((2.0, 2.0))  # equal gradient norms 2; loss ratios 1 (depth) and 2 (semantic: lagging)
    total = scheme(losses, [net.shared])
    relative = [1 / 1.5, 2 / 1.5]
    targets = [2.0 * r**1.5 for r in relative]
    assert float(total.detach()) == pytest.approx(2.0 + 2.0 + abs(2.0 - targets[0]) + abs(2.0 - targets[1]), rel=1e-6)
    optimiser = torch.optim.SGD(scheme.parameters(), lr=0.05)
    for _ in range(5):
        optimiser.zero_grad()
        scheme(net((2.0, 2.0)), [net.shared]).backward()
        optimiser.step()
        scheme.after_step({t: float(v.detach()) for t, v in losses.items()})
        weights = scheme.weights()
        assert sum(weights.values()) == pytest.approx(2.0)
    assert weights["semantic"] > 1.0 > weights["depth"]


def test_gradnorm_without_shared_parameters_or_gradients() -> None:
    scheme = GradNorm(TASKS, {})
    net = LinearTasks()
    with pytest.raises(ValueError, match="last shared parameters"):
        scheme(net((1.0, 1.0)), [])
    with torch.no_grad():
        total = scheme(net((1.0, 3.0)), [net.shared])
    assert float(total.detach()) == pytest.approx(4.0), "without autograd (validation) it is the plain weighted sum"


class PlaneTasks(torch.nn.Module):
    """A two-parameter 'network' whose task losses are ``g_t . W + 5``: the task gradients are the rows ``g_t``."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = torch.nn.Parameter(torch.zeros(2))

    def forward(self, gradients: list[list[float]]) -> dict[str, torch.Tensor]:
        return {t: (torch.tensor(g) * self.shared).sum() + 5.0 for t, g in zip(TASKS, gradients)}


def _softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(x) for x in logits]
    return [e / sum(exps) for e in exps]


def test_famo_network_gradient_is_the_log_objective_normalised() -> None:
    scheme = FAMO(TASKS, {"depth": 1.0, "semantic": 3.0})  # z starts proportional to the task weights
    assert scheme.weights() == pytest.approx({"depth": 0.25, "semantic": 0.75}, rel=1e-6)
    net = LinearTasks()
    losses = net((2.0, 0.5))  # L = (2, 0.5) with dL/dW = (2, 0.5)
    scheme(losses, [net.shared]).backward()
    # k_t = z_t / (c L_t), c = sum z_t / L_t = 0.125 + 1.5
    k = [0.125 / 1.625, 1.5 / 1.625]
    assert net.shared.grad.tolist() == pytest.approx([k[0] * 2.0 + k[1] * 0.5], rel=1e-6)
    paper = LinearTasks()  # the paper's form: grad of sum z_t log(L_t + eps) / c with c held constant
    z, values = torch.tensor([0.25, 0.75]), paper((2.0, 0.5))
    c = float(sum(z[i] / (values[t].detach() + 1e-8) for i, t in enumerate(TASKS)))
    (sum(z[i] * torch.log(values[t] + 1e-8) for i, t in enumerate(TASKS)) / c).backward()
    assert net.shared.grad.tolist() == pytest.approx(paper.shared.grad.tolist(), rel=1e-6)


def test_famo_logit_update_matches_softmax_jacobian_and_first_adam_step() -> None:
    lr, decay = 0.025, 0.001
    scheme = FAMO(TASKS, {"depth": 1.0, "semantic": 3.0}, famo_lr=lr, famo_weight_decay=decay)
    xi = [-math.log(3.0) / 2, math.log(3.0) / 2]  # log weights, centred
    assert scheme.logits.tolist() == pytest.approx(xi, rel=1e-6)
    before, after = {"depth": 2.0, "semantic": 1.0}, {"depth": 1.0, "semantic": 0.9}
    scheme.after_recompute(before, after)
    eps = 1e-8
    delta = [math.log(before[t] + eps) - math.log(after[t] + eps) for t in TASKS]
    z = _softmax(xi)
    mean = sum(zi * di for zi, di in zip(z, delta))
    grad = [zi * (di - mean) for zi, di in zip(z, delta)]  # (diag(z) - z z^T) delta
    grad = [g + decay * x for g, x in zip(grad, xi)]  # Adam's L2 weight decay
    # first Adam step: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    expected = [x - lr * g / (abs(g) + 1e-8) for x, g in zip(xi, grad)]
    assert scheme.logits.tolist() == pytest.approx(expected, rel=1e-6)
    assert scheme.weights()["depth"] < 0.25, "depth's loss fell more (halved), so its weight must fall"
    assert scheme.logits.grad is None and not scheme.logits.requires_grad, "the trainer's optimiser must not see the logits"


def test_famo_state_dict_holds_logits_and_adam_moments() -> None:
    scheme = FAMO(TASKS, {})
    steps = [({"depth": 2.0, "semantic": 1.0}, {"depth": 1.5, "semantic": 0.99}),
             ({"depth": 1.5, "semantic": 1.0}, {"depth": 1.4, "semantic": 0.8})]
    for before, after in steps:
        scheme.after_recompute(before, after)
    restored = FAMO(TASKS, {})
    restored.load_state_dict(scheme.state_dict())
    assert restored.logits.tolist() == scheme.logits.tolist()
    fresh = FAMO(TASKS, {})  # same logits, no Adam history: its next step differs
    fresh.load_state_dict({"logits": scheme.logits.detach().clone(), "_extra_state": FAMO(TASKS, {}).optimizer.state_dict()})
    third = ({"depth": 1.4, "semantic": 0.8}, {"depth": 1.3, "semantic": 0.79})
    for model in (scheme, restored, fresh):
        model.after_recompute(*third)
    assert restored.logits.tolist() == scheme.logits.tolist()
    assert fresh.logits.tolist() != pytest.approx(scheme.logits.tolist(), rel=1e-4)


def _aligned_weights_by_hand(g1: tuple[float, float], g2: tuple[float, float], preferences: tuple[float, float]) -> list[float]:
    """w = V diag(sqrt(lambda_min / lambda)) V^T p for the 2x2 Gram matrix [[a, b], [b, d]] (b != 0)."""
    a, b, d = g1[0] ** 2 + g1[1] ** 2, g1[0] * g2[0] + g1[1] * g2[1], g2[0] ** 2 + g2[1] ** 2
    root = math.sqrt((a - d) ** 2 + 4 * b * b)
    eigenvalues = [(a + d - root) / 2, (a + d + root) / 2]
    vectors = []
    for lam in eigenvalues:  # (a - lam) v1 + b v2 = 0
        v = (b, lam - a)
        norm = math.hypot(*v)
        vectors.append((v[0] / norm, v[1] / norm))
    weights = [0.0, 0.0]
    for lam, v in zip(eigenvalues, vectors):
        along = math.sqrt(eigenvalues[0] / lam) * (v[0] * preferences[0] + v[1] * preferences[1])
        weights = [weights[0] + along * v[0], weights[1] + along * v[1]]
    return weights


def test_aligned_mtl_weights_match_the_hand_eigendecomposition() -> None:
    gradients = [[3.0, 0.0], [1.0, 1.0]]
    scheme = AlignedMTL(TASKS, {})
    net = PlaneTasks()
    total = scheme(net(gradients), [net.shared])
    expected = _aligned_weights_by_hand((3.0, 0.0), (1.0, 1.0), (1.0, 1.0))
    weights = scheme.weights()
    assert [weights["depth"], weights["semantic"]] == pytest.approx(expected, rel=1e-9)
    assert float(total.detach()) == pytest.approx(5.0 * sum(expected), rel=1e-6)
    total.backward()
    G = torch.tensor(gradients, dtype=torch.float64)
    combined = net.shared.grad.double()
    torch.testing.assert_close(combined, G.T @ torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-9)
    # the aligned task gradients W_a G are orthogonal, all of length sqrt(lambda_min), and the step (their sum)
    # projects equally, lambda_min, onto each of them
    lam_min = float(torch.linalg.eigvalsh(G @ G.T)[0])
    eigenvalues, vectors = torch.linalg.eigh(G @ G.T)
    aligned = vectors @ torch.diag((eigenvalues[0] / eigenvalues).sqrt()) @ vectors.T @ G
    torch.testing.assert_close(aligned @ aligned.T, lam_min * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(aligned @ combined, torch.full((2,), lam_min, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_aligned_mtl_uses_task_weights_as_preferences_and_ignores_gradient_scale() -> None:
    scheme = AlignedMTL(TASKS, {"depth": 2.0, "semantic": 0.5})
    net = PlaneTasks()
    scheme(net([[30.0, 0.0], [10.0, 10.0]]), [net.shared])  # 10x the gradients: the same weights
    weights = scheme.weights()
    assert [weights["depth"], weights["semantic"]] == pytest.approx(_aligned_weights_by_hand((3.0, 0.0), (1.0, 1.0), (2.0, 0.5)), rel=1e-9)


def test_aligned_mtl_rank_deficient_and_zero_gradients() -> None:
    scheme = AlignedMTL(TASKS, {})
    net = PlaneTasks()
    scheme(net([[1.0, 0.0], [2.0, 0.0]]), [net.shared])  # parallel: Gram [[1, 2], [2, 4]] has eigenvalues 0 and 5
    # only the eigenvector (1, 2)/sqrt(5) is kept, with scale 1: w = v (v . 1) = (3/5, 6/5)
    assert list(scheme.weights().values()) == pytest.approx([0.6, 1.2], rel=1e-9)
    scheme(net([[0.0, 0.0], [0.0, 0.0]]), [net.shared])
    assert scheme.weights() == {"depth": 1.0, "semantic": 1.0}, "no gradient on the shared layer: the task weights"
    with pytest.raises(ValueError, match="last shared parameters"):
        scheme(net([[1.0, 0.0], [0.0, 1.0]]), [])
    with torch.no_grad():
        total = scheme(net([[1.0, 0.0], [0.0, 1.0]]), [net.shared])
    assert float(total) == pytest.approx(10.0), "without autograd (validation) the last weights apply"


RANK_GRADIENTS = [[[3.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 3.0]]]  # each process's own batch: mean [[2, 0], [1, 2]]
RANK_SLOPES = [(2.0, 0.5), (4.0, 1.5)]  # FAMO: losses (2, 0.5) and (4, 1.5), mean (3, 1)


def _two_rank_weighting_worker(rank: int, init_file: str, out_dir: str) -> None:
    join_group(rank, init_file)
    aligned, plane = AlignedMTL(TASKS, {}), PlaneTasks()
    aligned(plane(RANK_GRADIENTS[rank]), [plane.shared]).backward()
    famo, line = FAMO(TASKS, {}), LinearTasks()
    famo(line(RANK_SLOPES[rank]), [line.shared]).backward()
    finish_rank(rank, out_dir, {"aligned": list(aligned.weights().values()), "famo_grad": line.shared.grad.tolist()})


def test_two_processes_weight_with_the_global_batch(tmp_path: Path) -> None:
    results = run_two_ranks(_two_rank_weighting_worker, tmp_path)
    expected = _aligned_weights_by_hand((2.0, 0.0), (1.0, 2.0), (1.0, 1.0))
    assert results[0]["aligned"] == results[1]["aligned"], "the ranks computed different Aligned-MTL weights"
    assert results[0]["aligned"] == pytest.approx(expected, rel=1e-9), "weights of the averaged gradients"
    # FAMO's coefficients from the mean losses (3, 1) with z = (1/2, 1/2): k = (1/6, 1/2) / (2/3) = (1/4, 3/4)
    for rank, (depth, semantic) in enumerate(RANK_SLOPES):
        assert results[rank]["famo_grad"] == pytest.approx([0.25 * depth + 0.75 * semantic], rel=1e-6)


# -- gradients under AMP (issue 22, 11) ------------------------------------------------------------------

def _fp16_losses(scale: float, half: bool) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Two task losses of ``scale * sum(x * W)``, computed in FP16 (as under autocast) or FP32; W: the shared layer.

    ``scale`` 1e-8 is below FP16's smallest subnormal (6e-8): the gradient flowing back through the FP16
    product is zero unless the loss is scaled first, as GradScaler does."""
    generator = torch.Generator().manual_seed(0)
    shared = torch.nn.Parameter(torch.rand(16, generator=generator) + 0.5)
    x = torch.rand(2, 16, generator=generator) + 0.5
    dtype = torch.float16 if half else torch.float32
    products = x.to(dtype) * shared.to(dtype)  # what an autocast convolution does: FP16 activations
    losses = {t: scale * (k + 1) * products[k].float().sum() for k, t in enumerate(TASKS)}  # the trainer's losses are float32
    return losses, [shared]


def test_gradnorm_and_aligned_mtl_gradients_of_scaled_fp16_losses_match_fp32():
    scale = 2.0**16  # GradScaler's initial scale
    losses32, shared32 = _fp16_losses(1e-8, half=False)
    reference = GradNorm(TASKS, {}).gradient_norms(GradNorm(TASKS, {})._stack(losses32), shared32)
    assert (reference > 0).all()
    losses16, shared16 = _fp16_losses(1e-8, half=True)
    stacked = GradNorm(TASKS, {})._stack(losses16)
    unscaled = GradNorm(TASKS, {}).gradient_norms(stacked, shared16)
    assert unscaled.tolist() == [0.0, 0.0], "the FP16 gradient underflows without the loss scale"
    norms = GradNorm(TASKS, {}).gradient_norms(stacked, shared16, scale)
    assert norms.dtype == torch.float32 and norms.tolist() == pytest.approx(reference.tolist(), rel=2e-3)
    aligned = AlignedMTL(TASKS, {})
    gradients = aligned.task_gradients(stacked, shared16, scale)
    expected = aligned.task_gradients(AlignedMTL(TASKS, {})._stack(losses32), shared32)
    assert gradients.dtype == torch.float32 and torch.allclose(gradients, expected, rtol=2e-3, atol=0)
    assert not aligned.task_gradients(stacked, shared16).any(), "and all zeros without it"


def test_gradient_weightings_take_the_loss_scale_in_forward_and_skip_an_overflowed_step():
    losses, shared = _fp16_losses(1e-8, half=True)
    scheme = AlignedMTL(TASKS, {"depth": 1.0, "semantic": 1.0})
    scheme(losses, shared, 2.0**16)
    weights = scheme.weights()
    assert weights["depth"] != pytest.approx(weights["semantic"]), "aligned weights of two unequal gradients (not the zero-gradient fallback)"
    losses, shared = _fp16_losses(1.0, half=True)
    scheme(losses, shared, 2.0**16)  # 1.0 x 65536 x the products overflows FP16: infinite gradients
    assert scheme.weights() == weights, "an overflowed step keeps the last weights"
    gradnorm = GradNorm(TASKS, {})
    total = gradnorm(losses, shared, 2.0**16)
    assert torch.isfinite(total), "GradNorm's balancing term is dropped for an overflowed step"
    assert GradNorm.USES_GRADIENTS and AlignedMTL.USES_GRADIENTS and not FixedWeighting.USES_GRADIENTS
