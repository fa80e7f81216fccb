"""Loss weighting: combines per-task losses into the scalar the optimiser minimises.

Every scheme is an ``nn.Module`` (its learnable parameters, if any, join the optimiser) with:
- ``forward(losses, shared_parameters) -> total``: ``losses`` maps task -> scalar loss tensor;
  ``shared_parameters`` are the last shared layer's parameters (for gradient-based schemes).
- ``weights() -> dict[str, float]``: the current task weights, for logging.
- ``after_step(losses)``: bookkeeping after the optimiser step (loss history, renormalisation).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class LossWeighting(nn.Module):
    """Base class; subclasses implement ``forward``."""

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


class FixedWeighting(LossWeighting):
    """Constant task weights from the config."""

    def forward(self, losses: dict[str, torch.Tensor], shared_parameters: list[torch.Tensor]) -> torch.Tensor:
        return sum(self.initial[t] * losses[t] for t in self.tasks)


WEIGHTINGS: dict[str, Callable[..., LossWeighting]] = {"fixed": FixedWeighting}


def build_weighting(name: str, tasks: list[str], task_weights: dict[str, float], **options: float) -> LossWeighting:
    """Build a weighting scheme by name; raise ValueError listing the valid names."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss_weighting '{name}'; valid: {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, task_weights, **options)
