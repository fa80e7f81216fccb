"""Multi-scale decoders over a stride 4-32 feature pyramid: its per-level maps (``FeaturePyramid``) or one
fused stride-4 (or stride-8) map (``PyramidDecoder``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    """Conv, batch norm and ReLU with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class FeaturePyramid(nn.Module):
    """FPN-style top-down pathway: each pyramid level projected to ``channels`` (1x1), merged top-down
    (coarse upsampled and added to fine) and smoothed (3x3 conv-bn-relu). Returns the per-level maps,
    finest first (MTI-Net's shared neck reads them as each scale's base features)."""

    def __init__(self, in_channels: tuple[int, ...] | list[int], channels: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels) for _ in in_channels)
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        merged: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
        top = self.lateral[-1](features[-1])
        merged[-1] = top
        for i in range(len(features) - 2, -1, -1):
            top = self.lateral[i](features[i]) + F.interpolate(top, size=features[i].shape[-2:], mode="bilinear", align_corners=False)
            merged[i] = top
        return [smooth(m) for smooth, m in zip(self.smooth, merged)]


class PyramidDecoder(FeaturePyramid):
    """The feature pyramid's levels upsampled to ``stride`` (4 or 8), summed and fused (3x3 conv-bn-relu):
    one map at that stride. With stride 8 the stride-4 level is not read: the fusion and everything after it
    run on a quarter of the pixels (the LR-ASPP choice for mobile segmentation, Howard et al. 2019)."""

    def __init__(self, in_channels: tuple[int, ...] | list[int], channels: int = 64, stride: int = 4) -> None:
        if stride not in (4, 8):
            raise ValueError(f"decoder stride must be 4 or 8, got {stride}")
        self.first_level = stride // 8  # 0 for stride 4, 1 for stride 8
        super().__init__(list(in_channels)[self.first_level:], channels)
        self.fuse = conv_bn_relu(channels, channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        levels = super().forward(features[self.first_level:])
        size = levels[0].shape[-2:]
        total = levels[0]
        for level in levels[1:]:
            total = total + F.interpolate(level, size=size, mode="bilinear", align_corners=False)
        return self.fuse(total)
