"""Cross-stitch networks (Misra et al., CVPR 2016): soft parameter sharing between per-task encoders.

Options (``model.options``):
- ``cross_stitch_self`` (0.9): initial coefficient of a task's own activations.
- ``cross_stitch_other`` (0.1): initial coefficient of every other task's activations.
- ``cross_stitch_lr_mult`` (10.0): learning-rate multiplier of the coefficients (see ``param_groups``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import PyramidDecoder
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.interaction.blocks import read_options, require_multitask
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import MultiTaskNet, register

DEFAULTS: dict[str, Any] = {"cross_stitch_self": 0.9, "cross_stitch_other": 0.1, "cross_stitch_lr_mult": 10.0}


class CrossStitchUnit(nn.Module):
    """Mixes T same-shaped activations with learned per-channel coefficients.

    ``alpha`` has shape (T_out, T_in, C): ``out[t] = sum_s alpha[t, s, :] * x[s]`` (per channel).
    """

    def __init__(self, num_tasks: int, channels: int, self_weight: float, other_weight: float) -> None:
        super().__init__()
        alpha = torch.full((num_tasks, num_tasks, channels), float(other_weight))
        for t in range(num_tasks):
            alpha[t, t] = float(self_weight)
        self.alpha = nn.Parameter(alpha)
        self.num_tasks = num_tasks

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_tasks:
            raise ValueError(f"cross-stitch unit built for {self.num_tasks} tasks got {len(xs)} activations")
        out = []
        for t in range(len(xs)):
            mixed = xs[0] * self.alpha[t, 0].view(1, -1, 1, 1)
            for s in range(1, len(xs)):
                mixed = mixed + xs[s] * self.alpha[t, s].view(1, -1, 1, 1)
            out.append(mixed)
        return out


@register("cross_stitch")
class CrossStitchNet(MultiTaskNet):
    """One encoder column per task, a cross-stitch unit after each of the 4 stages, then per-task
    pyramid decoders and heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = require_multitask(config, "cross_stitch")
        options = read_options(config, "cross_stitch", DEFAULTS)
        if options["cross_stitch_lr_mult"] <= 0:
            raise ValueError(f"model.options.cross_stitch_lr_mult must be positive, got {options['cross_stitch_lr_mult']}")
        self.lr_mult = options["cross_stitch_lr_mult"]
        self.encoders = nn.ModuleDict({t: build_encoder(config.encoder, config.pretrained) for t in self.tasks})
        channels = self.encoders[self.tasks[0]].out_channels
        self_weight, other_weight = options["cross_stitch_self"], options["cross_stitch_other"]
        self.stitches = nn.ModuleList(CrossStitchUnit(len(self.tasks), c, self_weight, other_weight) for c in channels)
        self.decoders = nn.ModuleDict({t: PyramidDecoder(channels, config.decoder_channels) for t in self.tasks})
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, config.decoder_channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        xs = [self.encoders[t].stem(image) for t in self.tasks]
        pyramids: list[list[torch.Tensor]] = [[] for _ in self.tasks]
        for i, stitch in enumerate(self.stitches):
            xs = stitch([self.encoders[t].stages[i](x) for t, x in zip(self.tasks, xs)])
            for pyramid, x in zip(pyramids, xs):
                pyramid.append(x)
        return {t: self.outputs[t](self.decoders[t](pyramid), size) for t, pyramid in zip(self.tasks, pyramids)}

    def stitch_parameters(self) -> list[nn.Parameter]:
        """The cross-stitch coefficients of every unit."""
        return [unit.alpha for unit in self.stitches]

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimiser groups: the network at ``base_lr``; the coefficients at ``base_lr * cross_stitch_lr_mult``
        without weight decay (decay would pull them towards 0 and switch the columns off)."""
        stitch_ids = {id(p) for p in self.stitch_parameters()}
        rest = [p for p in self.parameters() if id(p) not in stitch_ids]
        return [
            {"params": rest, "lr": base_lr},
            {"params": self.stitch_parameters(), "lr": base_lr * self.lr_mult, "weight_decay": 0.0},
        ]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last cross-stitch unit's coefficients: the last layer through which tasks share (GradNorm)."""
        return [self.stitches[-1].alpha]
