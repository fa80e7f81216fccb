"""Loss weighting: combines per-task losses into the scalar the optimiser minimises.

Every scheme is an ``nn.Module`` (its parameters that require grad, if any, join the network's optimiser) with:
- ``forward(losses, shared_parameters, loss_scale=1.0) -> total``: ``losses`` maps task -> scalar loss tensor;
  ``shared_parameters`` are the last shared layer's parameters (for gradient-based schemes, ``USES_GRADIENTS``);
  ``loss_scale`` is AMP's current loss scale (``GradScaler.get_scale()``): under autocast the gradients flow back
  through FP16 activations, where a task's unscaled gradient underflows to zero (FP16's smallest subnormal is
  6e-8), so those schemes differentiate ``loss_scale * L_t`` and divide the float32 result by ``loss_scale``, as
  the optimiser's own backward does.
- ``weights() -> dict[str, float]``: the current task weights, for logging.
- ``after_step(losses)``: bookkeeping after the optimiser step (loss history, renormalisation).
- ``RECOMPUTES_LOSSES`` / ``after_recompute(before, after)``: a scheme that sets the flag gets, after every
  optimiser step, the same batch's losses recomputed without grad by the updated network (``after``) next to
  the losses of the step (``before``).
The trainer passes ``after_step`` and ``after_recompute`` the losses averaged over all DDP processes, so every
process keeps the same weighting state.

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
- ``famo`` (Liu, Feng, Stone, Liu, NeurIPS 2023): task logits ``xi`` learned from how much each loss fell
  in the last step, so that all losses fall at the same rate. Options: ``famo_lr`` (0.025),
  ``famo_weight_decay`` (0.001). Costs one extra forward pass (no grad) per step.
- ``aligned_mtl`` (Senushkin et al., CVPR 2023): per-step weights that make the task gradients on the last
  shared layer orthogonal and of equal length (the condition number of their matrix becomes 1). Costs one
  backward pass per task through its own decoder to that layer, like ``gradnorm``. No options.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn

from mtl_perception.distributed import mean_over_processes


class LossWeighting(nn.Module):
    """Base class; subclasses implement ``forward``."""

    OPTIONS: tuple[str, ...] = ()  # names of the keyword options the scheme accepts
    RECOMPUTES_LOSSES = False  # True: the trainer calls after_recompute after every optimiser step
    USES_GRADIENTS = False  # True: forward differentiates each task's loss (and needs AMP's loss_scale)

    def __init__(self, tasks: list[str], task_weights: dict[str, float]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.initial = {t: float(task_weights.get(t, 1.0)) for t in self.tasks}

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        return dict(self.initial)

    def after_step(self, losses: dict[str, float]) -> None:
        """Called with detached per-task loss values after each optimiser step."""

    def after_recompute(self, before: dict[str, float], after: dict[str, float]) -> None:
        """With ``RECOMPUTES_LOSSES``: one batch's losses at the optimiser step and recomputed right after it."""

    def _preferences(self) -> torch.Tensor:
        """``train.task_weights`` as a (T,) tensor in task order."""
        return torch.tensor([self.initial[t] for t in self.tasks])

    def _stack(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The losses as a (T,) tensor in task order."""
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"loss weighting expects a loss for every task {self.tasks}; missing {missing}")
        return torch.stack([losses[t] for t in self.tasks])


def unscaled_gradients(loss: torch.Tensor, parameters: list[torch.Tensor], loss_scale: float = 1.0) -> list[torch.Tensor | None]:
    """Float32 gradients of ``loss`` on ``parameters`` without a graph, taken of ``loss * loss_scale`` (so that
    FP16 activation gradients under AMP do not underflow) and divided by ``loss_scale`` again; None: unused."""
    grads = torch.autograd.grad(loss * loss_scale, parameters, retain_graph=True, allow_unused=True)
    return [None if g is None else g.detach().float() / loss_scale for g in grads]


class FixedWeighting(LossWeighting):
    """Constant task weights from the config."""

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        return sum(self.initial[t] * losses[t] for t in self.tasks)


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting: ``sum_t exp(-s_t) L_t + s_t`` with learned ``s_t``."""

    def __init__(self, tasks: list[str], task_weights: dict[str, float]) -> None:
        super().__init__(tasks, task_weights)
        bad = {t: w for t, w in self.initial.items() if w <= 0}
        if bad:
            raise ValueError(f"uncertainty weighting starts from train.task_weights, which must be positive; got {bad}")
        self.log_vars = nn.Parameter(torch.tensor([-math.log(self.initial[t]) for t in self.tasks]))

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
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

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        stacked = self._stack(losses)
        scale = self._preferences().double() * self.factors()
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
    USES_GRADIENTS = True

    def __init__(self, tasks: list[str], task_weights: dict[str, float], gradnorm_alpha: float = 1.5) -> None:
        super().__init__(tasks, task_weights)
        start = self._preferences()
        if (start <= 0).any():
            raise ValueError(f"gradnorm starts from train.task_weights, which must be positive; got {self.initial}")
        self.alpha = float(gradnorm_alpha)
        self.loss_weights = nn.Parameter(start * len(self.tasks) / start.sum())
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))

    def gradient_norms(self, stacked: torch.Tensor, shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        """(T,) float32 norms ``||grad_W L_t||`` over the shared parameters, without a graph (``unscaled_gradients``)."""
        norms = []
        for loss in stacked:
            squares = [g.pow(2).sum() for g in unscaled_gradients(loss, shared_parameters, loss_scale) if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else loss.new_zeros((), dtype=torch.float32))
        return torch.stack(norms)

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
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
        norms = self.gradient_norms(stacked, shared, loss_scale)
        if not bool(torch.isfinite(norms).all()):
            return weighted  # AMP's scale overflowed (GradScaler then lowers it): no weight update from an infinite gradient
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


def _training(stacked: torch.Tensor) -> bool:
    """True in a training step (the losses carry a graph); False in evaluation."""
    return torch.is_grad_enabled() and stacked.requires_grad


class FAMO(LossWeighting):
    """FAMO, Fast Adaptive Multitask Optimization (Bo Liu, Yihao Feng, Peter Stone, Qiang Liu, NeurIPS 2023).

    Task logits ``xi``, weights ``z = softmax(xi)``. The network minimises ``sum_t z_t log(L_t + eps) / c``
    with ``c = sum_t z_t / (L_t + eps)`` held constant; its gradient is ``sum_t k_t grad L_t`` with
    ``k_t = z_t / (c (L_t + eps))`` (the ``k_t`` sum to 1), so ``forward`` returns ``sum_t k_t L_t`` with
    ``k_t`` detached: the same gradient, and under DDP ``k`` comes from the losses averaged over the
    processes (one all-reduce of T numbers), which is the paper's step on the global batch. The losses'
    lower bounds are 0 (every loss here is non-negative) and ``eps`` is 1e-8.

    After the optimiser step the trainer recomputes the losses on the same batch (one extra forward pass
    without grad per step) and ``after_recompute`` moves ``xi`` by Adam (its own optimiser: L2 weight decay
    ``famo_weight_decay``, learning rate ``famo_lr``) along the gradient ``J_softmax(xi)^T delta`` with
    ``delta_t = log(before_t + eps) - log(after_t + eps)``: a task whose loss fell less gains weight.

    Defaults are the published ones: ``famo_lr`` 0.025 (the paper's beta; ``--method-params-lr`` in the
    authors' code, github.com/Cranial-XIX/FAMO, experiments/utils.py), ``famo_weight_decay`` 0.001 (the
    paper's gamma in its Algorithm 2 and the authors' QM9 script; their CelebA script uses 0.01 and the
    class default in methods/weight_methods.py is 1e-5). ``xi`` starts at ``log train.task_weights``
    (centred), so ``z`` starts proportional to them: with the default equal weights that is the paper's
    ``xi = 0``; the weight decay draws ``xi`` back towards equal weights. ``weights()`` reports ``z``.
    ``xi`` and its Adam state are saved in the state dict (a non-trainable parameter and the module's
    extra state), so a resumed run continues exactly.
    """

    OPTIONS = ("famo_lr", "famo_weight_decay")
    RECOMPUTES_LOSSES = True
    EPS = 1e-8

    def __init__(self, tasks: list[str], task_weights: dict[str, float], famo_lr: float = 0.025,
                 famo_weight_decay: float = 0.001) -> None:
        super().__init__(tasks, task_weights)
        start = self._preferences()
        if (start <= 0).any():
            raise ValueError(f"famo starts from train.task_weights, which must be positive; got {self.initial}")
        if famo_lr <= 0:
            raise ValueError(f"weighting_options.famo_lr must be positive, got {famo_lr}")
        if famo_weight_decay < 0:
            raise ValueError(f"weighting_options.famo_weight_decay must be non-negative, got {famo_weight_decay}")
        # a Parameter (moved in place by .to(), so the optimiser keeps it) that the trainer's optimiser skips
        self.logits = nn.Parameter(start.log() - start.log().mean(), requires_grad=False)
        self.optimizer = torch.optim.Adam([self.logits], lr=float(famo_lr), weight_decay=float(famo_weight_decay))

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        stacked = self._stack(losses)
        levels = stacked.detach()
        if _training(stacked):
            levels = mean_over_processes(levels)
        ratio = torch.softmax(self.logits.detach(), dim=0).to(levels) / (levels + self.EPS)
        return ((ratio / ratio.sum()) * stacked).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(z) for t, z in zip(self.tasks, torch.softmax(self.logits.detach(), dim=0))}

    def after_recompute(self, before: dict[str, float], after: dict[str, float]) -> None:
        def logs(values: dict[str, float]) -> torch.Tensor:
            return torch.tensor([values[t] for t in self.tasks], dtype=self.logits.dtype, device=self.logits.device).add(self.EPS).log()

        delta = logs(before) - logs(after)
        z = torch.softmax(self.logits.detach(), dim=0)
        self.logits.grad = z * (delta - (z * delta).sum())  # J^T delta, J = diag(z) - z z^T
        self.optimizer.step()
        self.logits.grad = None

    def get_extra_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(copy.deepcopy(state))  # Adam would keep the given moment tensors and share them


class AlignedMTL(LossWeighting):
    """Aligned-MTL (Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023), on the model's last shared layer.

    With ``G`` (T x P) the task gradients on the shared parameters ``W`` (``last_shared_parameters()``) and
    ``G G^T = V diag(lambda) V^T``, the aligned task gradients ``W_a G`` with
    ``W_a = V diag(sqrt(lambda_min / lambda)) V^T`` are orthogonal and all of length ``sqrt(lambda_min)``
    (the paper's scale mode ``min``, its default); their sum weighted by ``train.task_weights`` is
    ``G^T w`` with ``w = W_a task_weights``. ``forward`` therefore returns ``sum_t w_t L_t`` with ``w``
    detached: on ``W`` its gradient is exactly the aligned one. The paper aligns the gradients on all
    shared parameters (or, variant "UB", on the shared representation) and leaves the decoders' own
    gradients unscaled; here the last shared layer stands in for the encoder, like ``gradnorm``, and the
    weights scale every parameter's gradient, the decoders' too. A weight can come out negative (two nearly
    parallel task gradients of very different lengths): that task's decoder then steps up its own loss.

    Eigenvalues at or below ``lambda_max * T * eps`` (float32's ``eps``: the gradients are float32) are
    treated as zero, as in the authors' code (github.com/SamsungLabs/MTL, code/optim/aligned/solver.py);
    when every gradient is zero the weights are ``train.task_weights``. Under DDP each process's ``G`` is
    averaged over the processes before the Gram matrix (an all-reduce of T x P numbers per step), so all
    compute the same weights, those of the global batch. Chosen over PCGrad (projects in a random task order:
    not deterministic, nor the same on every process without a shared seed) and Nash-MTL (an iterative
    convex solver per step): a closed form, one T x T eigendecomposition. ``weights()`` reports the last
    step's ``w``.
    """

    USES_GRADIENTS = True

    def __init__(self, tasks: list[str], task_weights: dict[str, float]) -> None:
        super().__init__(tasks, task_weights)
        self.register_buffer("last_weights", self._preferences().double())

    def task_gradients(self, stacked: torch.Tensor, shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        """(T, P) float32 gradients of each loss on the shared parameters, flattened, without a graph (unused:
        zeros; ``unscaled_gradients``)."""
        size = sum(p.numel() for p in shared_parameters)
        gradients = torch.empty(len(stacked), size, dtype=torch.float32, device=stacked.device)
        for row, loss in zip(gradients, stacked):
            grads = unscaled_gradients(loss, shared_parameters, loss_scale)
            torch.cat([(torch.zeros_like(p, dtype=torch.float32) if g is None else g).flatten()
                       for p, g in zip(shared_parameters, grads)], out=row)  # one copy, straight into G
        return gradients

    def aligned_weights(self, gradients: torch.Tensor) -> torch.Tensor:
        """(T,) float64 weights ``W_a task_weights`` for the (T, P) task gradients."""
        gram = (gradients @ gradients.T).double()  # float32 products (the gradients are float32), T x T in float64
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        preferences = self._preferences().to(gram)
        tolerance = eigenvalues.max() * len(self.tasks) * torch.finfo(torch.float32).eps
        kept = eigenvalues > tolerance
        if not bool(kept.any()):
            return preferences
        values, vectors = eigenvalues[kept], eigenvectors[:, kept]
        scales = torch.sqrt(values.min() / values)
        return vectors @ (scales * (vectors.T @ preferences))

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor], loss_scale: float = 1.0) -> torch.Tensor:
        stacked = self._stack(losses)
        if _training(stacked):
            shared = [p for p in shared_parameters if p.requires_grad]
            if not shared:
                raise ValueError("aligned_mtl needs the model's last shared parameters (model.last_shared_parameters()); "
                                 "this architecture shares none: use loss_weighting fixed, uncertainty, dwa or famo")
            gradients = mean_over_processes(self.task_gradients(stacked, shared, loss_scale))
            if bool(torch.isfinite(gradients).all()):  # else AMP's scale overflowed (on some rank): keep the last weights
                self.last_weights.copy_(self.aligned_weights(gradients))
        return (self.last_weights.to(stacked) * stacked).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(w) for t, w in zip(self.tasks, self.last_weights)}


WEIGHTINGS: dict[str, Callable[..., LossWeighting]] = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAveraging,
    "gradnorm": GradNorm,
    "famo": FAMO,
    "aligned_mtl": AlignedMTL,
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
