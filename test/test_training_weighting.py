"""Loss weighting schemes against hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_perception.training.weighting import (WEIGHTINGS, DynamicWeightAveraging, FixedWeighting, GradNorm, UncertaintyWeighting,
                                               build_weighting)

TASKS = ["depth", "semantic"]


def test_registry_and_option_errors() -> None:
    assert set(WEIGHTINGS) == {"fixed", "uncertainty", "dwa", "gradnorm"}
    assert isinstance(build_weighting("dwa", TASKS, {}, dwa_window=3), DynamicWeightAveraging)
    with pytest.raises(ValueError, match="valid: \\['dwa_temperature', 'dwa_window'\\]"):
        build_weighting("dwa", TASKS, {}, dwa_windw=3)
    with pytest.raises(ValueError, match="unknown loss_weighting 'nope'"):
        build_weighting("nope", TASKS, {})
    with pytest.raises(ValueError, match="positive integer"):
        build_weighting("dwa", TASKS, {}, dwa_window=2.5)
    with pytest.raises(ValueError, match="must be positive"):
        build_weighting("uncertainty", TASKS, {"depth": 0.0})


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
