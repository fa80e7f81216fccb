"""Loss weighting: combines per-task losses into the scalar the optimiser minimises.

Every scheme is an ``nn.Module`` (its learnable parameters, if any, join the optimiser) with:
- ``forward(losses, shared_parameters) -> total``: ``losses`` maps task -> scalar loss tensor;
  ``shared_parameters`` are the last shared layer's parameters (for gradient-based schemes).
- ``weights() -> dict[str, float]``: the current task weights, for logging.
- ``after_step(losses)``: bookkeeping after the optimiser step (loss history, renormalisation).

Schemes (``train.loss_weighting``) and their ``train.weighting_options``:
- ``fixed``: ``sum_t w_t L_t`` with ``w_t`` from ``train.task_weights``. No options.
- ``uncertainty`` (Kendall et al., CVPR 2018): a learned log-variance ``s_t`` per task,
  ``sum_t exp(-s_t) L_t + s_t``. The same form is used for every task (the paper's 1/2 factors of
  Gaussian regression are dropped: the depth and normals losses here are L1-type, not Gaussian, and
  a constant factor only rescales the learning rate of ``s_t``). ``s_t`` starts at ``-log w_t`` so the
  initial weights equal ``train.task_weights``. No options.
- ``dwa`` (Liu et al., CVPR 2019): weights ``K softmax_t(r_t / T)`` from the ratio ``r_t`` of the
  task's average loss over the last two windows, times ``train.task_weights``; weight 1 until two
  windows are complete. Options: ``dwa_window`` (100: steps per window, the step-based stand-in for
  the paper's epoch), ``dwa_temperature`` (2.0).
- ``gradnorm`` (Chen et al., ICML 2018): learned weights ``w_t`` (starting at ``train.task_weights``
  rescaled to sum to K) trained so that the gradient norms ``G_t = w_t ||grad_W L_t||`` on the shared
  parameters ``W`` approach ``mean(G) * r_t^alpha`` (``r_t``: the task's loss relative to its first
  loss, divided by the mean of those ratios). Option: ``gradnorm_alpha`` (1.5). After every step the
  weights are clamped positive and rescaled to sum to K.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn


class LossWeighting(nn.Module):
    """Base class; subclasses implement ``forward``."""

    OPTIONS: tuple[str, ...] = ()  # names of the keyword options the scheme accepts

    def __init__(self, tasks: list[str], task_weights: dict[str, float]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.initial = {t: float(task_weights.get(t, 1.0)) for t in self.tasks}

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        return dict(self.initial)

    def after_step(self, losses: dict[str, float]) -> None:
        """Called with detached per-task loss values after each optimiser step."""

    def _stack(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The losses as a (T,) tensor in task order."""
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"loss weighting expects a loss for every task {self.tasks}; missing {missing}")
        return torch.stack([losses[t] for t in self.tasks])


class FixedWeighting(LossWeighting):
    """Constant task weights from the config."""

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        return sum(self.initial[t] * losses[t] for t in self.tasks)


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting: ``sum_t exp(-s_t) L_t + s_t`` with learned ``s_t``."""

    def __init__(self, tasks: list[str], task_weights: dict[str, float]) -> None:
        super().__init__(tasks, task_weights)
        bad = {t: w for t, w in self.initial.items() if w <= 0}
        if bad:
            raise ValueError(f"uncertainty weighting starts from train.task_weights, which must be positive; got {bad}")
        self.log_vars = nn.Parameter(torch.tensor([-math.log(self.initial[t]) for t in self.tasks]))

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        stacked = self._stack(losses)
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(w) for t, w in zip(self.tasks, torch.exp(-self.log_vars.detach()))}


class DynamicWeightAveraging(LossWeighting):
    """Dynamic weight averaging over windows of ``dwa_window`` steps, temperature ``dwa_temperature``."""

    OPTIONS = ("dwa_window", "dwa_temperature")

    def __init__(self, tasks: list[str], task_weights: dict[str, float],
                 dwa_window: float = 100, dwa_temperature: float = 2.0) -> None:
        super().__init__(tasks, task_weights)
        if dwa_window < 1 or float(dwa_window) != int(dwa_window):
            raise ValueError(f"weighting_options.dwa_window must be a positive integer, got {dwa_window}")
        if dwa_temperature <= 0:
            raise ValueError(f"weighting_options.dwa_temperature must be positive, got {dwa_temperature}")
        self.window = int(dwa_window)
        self.temperature = float(dwa_temperature)
        count = len(self.tasks)
        # buffers, so the loss history is saved in checkpoints and resumes exactly
        self.register_buffer("window_sum", torch.zeros(count, dtype=torch.float64))
        self.register_buffer("window_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.zeros(2, count, dtype=torch.float64))  # [older, newer] window averages
        self.register_buffer("windows_done", torch.zeros((), dtype=torch.long))

    def factors(self) -> torch.Tensor:
        """The (T,) DWA factors: K * softmax(r / T) once two windows are complete, else ones."""
        count = len(self.tasks)
        if int(self.windows_done) < 2:
            return torch.ones(count, dtype=torch.float64)
        ratio = self.history[1] / self.history[0].clamp_min(1e-12)
        return count * torch.softmax(ratio / self.temperature, dim=0)

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        stacked = self._stack(losses)
        scale = torch.tensor([self.initial[t] for t in self.tasks], dtype=torch.float64) * self.factors()
        return (scale.to(stacked.device, stacked.dtype) * stacked).sum()

    def weights(self) -> dict[str, float]:
        return {t: self.initial[t] * float(f) for t, f in zip(self.tasks, self.factors())}

    def after_step(self, losses: dict[str, float]) -> None:
        values = [float(losses[t]) for t in self.tasks]
        self.window_sum += torch.tensor(values, dtype=torch.float64, device=self.window_sum.device)
        self.window_steps += 1
        if int(self.window_steps) == self.window:
            self.history[0] = self.history[1].clone()
            self.history[1] = self.window_sum / self.window
            self.windows_done += 1
            self.window_sum.zero_()
            self.window_steps.zero_()


class GradNorm(LossWeighting):
    """GradNorm: learned task weights that balance the tasks' gradient norms on the shared layer.

    ``forward`` returns ``sum_t w_t.detach() L_t + L_grad``: backpropagating it trains the network with
    the current weights and the weights (only) with ``L_grad = sum_t |G_t - target_t|``, because the
    gradient norms ``||grad_W L_t||`` are computed without a graph (constants times ``w_t``).
    """

    OPTIONS = ("gradnorm_alpha",)

    def __init__(self, tasks: list[str], task_weights: dict[str, float], gradnorm_alpha: float = 1.5) -> None:
        super().__init__(tasks, task_weights)
        start = torch.tensor([self.initial[t] for t in self.tasks])
        if (start <= 0).any():
            raise ValueError(f"gradnorm starts from train.task_weights, which must be positive; got {self.initial}")
        self.alpha = float(gradnorm_alpha)
        self.loss_weights = nn.Parameter(start * len(self.tasks) / start.sum())
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))

    def gradient_norms(self, stacked: torch.Tensor, shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        """(T,) norms ``||grad_W L_t||`` over the shared parameters, without a graph."""
        norms = []
        for loss in stacked:
            grads = torch.autograd.grad(loss, shared_parameters, retain_graph=True, allow_unused=True)
            squares = [g.detach().float().pow(2).sum() for g in grads if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else loss.new_zeros(()))
        return torch.stack(norms)

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        stacked = self._stack(losses)
        weighted = (self.loss_weights.detach() * stacked).sum()
        if not (torch.is_grad_enabled() and stacked.requires_grad):
            return weighted  # evaluation: no gradient to balance
        shared = [p for p in shared_parameters if p.requires_grad]
        if not shared:
            raise ValueError("gradnorm needs the model's last shared parameters (model.last_shared_parameters()); "
                             "this architecture shares none: use loss_weighting fixed, uncertainty or dwa")
        if not bool(self.has_initial):
            self.initial_losses.copy_(stacked.detach())
            self.has_initial.fill_(True)
        norms = self.gradient_norms(stacked, shared)
        grad_norms = self.loss_weights * norms
        ratio = stacked.detach() / self.initial_losses.clamp_min(1e-12)
        relative = ratio / ratio.mean().clamp_min(1e-12)
        target = (grad_norms.mean() * relative**self.alpha).detach()
        return weighted + (grad_norms - target).abs().sum()

    def weights(self) -> dict[str, float]:
        return {t: float(w) for t, w in zip(self.tasks, self.loss_weights.detach())}

    def after_step(self, losses: dict[str, float]) -> None:
        with torch.no_grad():
            self.loss_weights.clamp_(min=1e-4)
            self.loss_weights.mul_(len(self.tasks) / self.loss_weights.sum())


WEIGHTINGS: dict[str, Callable[..., LossWeighting]] = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAveraging,
    "gradnorm": GradNorm,
}


def build_weighting(name: str, tasks: list[str], task_weights: dict[str, float], **options: Any) -> LossWeighting:
    """Build a weighting scheme by name; raise ValueError listing the valid names or options."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss_weighting '{name}'; valid: {sorted(WEIGHTINGS)}")
    scheme = WEIGHTINGS[name]
    accepted = getattr(scheme, "OPTIONS", ())
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown weighting_options {unknown} for loss_weighting '{name}'; valid: {sorted(accepted)}")
    return scheme(tasks, task_weights, **options)
