"""Building blocks shared by the cross-task interaction architectures.

- ``require_multitask`` / ``read_options``: config checks every architecture runs first.
- ``aux_key``: the name of a deep-supervision output (``aux/<stage>/<task>``).
- ``GatedDistillation``: multi-modal distillation (PAD-Net, reused at every scale by MTI-Net).
- ``task_branch``: a task's own layers on top of a shared map (PAD-Net, PAP-Net).
- ``upsample_to``: bilinear resize to another map's spatial size.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import conv_bn_relu
from mtl_perception.tasks import AUX_PREFIX, validate_tasks


def require_multitask(config: ModelConfig, architecture: str) -> tuple[str, ...]:
    """The config's tasks in canonical order; ValueError if fewer than two (nothing to interact)."""
    tasks = validate_tasks(config.tasks)
    if len(tasks) < 2:
        raise ValueError(
            f"architecture '{architecture}' exchanges features between tasks and needs at least 2 tasks, "
            f"got {list(tasks)}; use architecture 'hard' or 'single' for one task"
        )
    return tasks


def read_options(config: ModelConfig, architecture: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` overridden by ``config.options``, each value converted to its default's type.

    Raises ValueError on an option the architecture does not read (a typo must not silently fall back
    to a default) or on a value of the wrong type.
    """
    options = dict(config.options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown model.options {unknown} for architecture '{architecture}'; valid: {sorted(defaults)}")
    values: dict[str, Any] = {}
    for key, default in defaults.items():
        value = options.get(key, default)
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            values[key] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"model.options.{key} must be an integer, got {value!r}")
            values[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"model.options.{key} must be a number, got {value!r}")
            values[key] = float(value)
    return values


def aux_key(stage: str, task: str) -> str:
    """Output key of a deep-supervision prediction, e.g. ``aux/s8/depth``."""
    return f"{AUX_PREFIX}{stage}/{task}"


def initial_predictions(heads: nn.ModuleDict, branch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each task branch's intermediate prediction ``aux/initial/<task>`` at the branch features' size
    (stride 4; PAD-Net, PAP-Net: deep supervision in training mode)."""
    return {aux_key("initial", t): heads[t](x, (x.shape[-2], x.shape[-1])) for t, x in branch.items()}


def task_branch(channels: int) -> nn.Sequential:
    """Two 3x3 conv-bn-relu layers: a task's own features taken from a shared map."""
    return nn.Sequential(conv_bn_relu(channels, channels), conv_bn_relu(channels, channels))


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``reference``."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class GatedDistillation(nn.Module):
    """Multi-modal distillation (Xu et al., PAD-Net, CVPR 2018).

    Every task ``t`` receives a message from every other task ``s`` (a 3x3 conv-bn-relu of ``s``'s
    features); the sum of the messages is gated by a sigmoid attention map (1x1 conv) computed from ``t``'s own
    features (what ``t`` chooses to take in) and added to ``t``'s features:
    ``out_t = x_t + sigmoid(g_t(x_t)) * sum_{s != t} m_{s->t}(x_s)``.
    """

    def __init__(self, tasks: tuple[str, ...] | list[str], channels: int) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        pairs = [self._pair(s, t) for t in self.tasks for s in self.tasks if s != t]
        self.messages = nn.ModuleDict({pair: conv_bn_relu(channels, channels) for pair in pairs})
        self.gates = nn.ModuleDict({t: nn.Conv2d(channels, channels, 1) for t in self.tasks})

    @staticmethod
    def _pair(source: str, target: str) -> str:
        return f"{source}_to_{target}"

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            sources = [s for s in self.tasks if s != t]
            message = self.messages[self._pair(sources[0], t)](features[sources[0]])
            for s in sources[1:]:
                message = message + self.messages[self._pair(s, t)](features[s])
            out[t] = features[t] + torch.sigmoid(self.gates[t](features[t])) * message
        return out


class ChannelGate(nn.Module):
    """Squeeze-and-excitation channel attention: ``x * sigmoid(fc(relu(fc(mean_hw(x)))))``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(squeezed))))
