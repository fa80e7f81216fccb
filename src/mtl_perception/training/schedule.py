"""Learning-rate schedules: linear warm-up, then cosine or polynomial decay, as a LambdaLR factor."""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str = "cosine", power: float = 0.9) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "poly":
        return (1.0 - progress) ** power
    raise ValueError(f"unknown schedule '{kind}'; valid: ['cosine', 'poly']")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, kind: str) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying ``lr_factor`` to every parameter group."""
    lr_factor(0, total_steps, warmup_steps, kind)  # validate the kind early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, kind))
