"""The encoder contract every backbone follows."""
from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """A backbone split into a stem and four stages with outputs at strides 4, 8, 16 and 32.

    Subclasses set ``stem`` (input -> stride 2 or 4 features), ``stages`` (an nn.ModuleList of four
    modules; stage i outputs stride 4 * 2**i) and ``out_channels`` (channels of each stage's output).
    Splitting into stages lets soft-sharing architectures (cross-stitch) mix activations between stages.
    """

    stem: nn.Module
    stages: nn.ModuleList
    out_channels: tuple[int, int, int, int]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
