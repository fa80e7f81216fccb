"""ResNet-18/34/50 backbones as four-stage encoders (output strides 4, 8, 16, 32).

Attribute names follow the common ImageNet checkpoint layout so pretrained weights map with a prefix
rename only: the stem holds ``conv1``/``bn1`` and stage i is that layout's ``layer{i+1}``; inside a
stage, blocks keep ``conv1..3``, ``bn1..3`` and ``downsample.0`` (conv) / ``downsample.1`` (bn).
ResNet-50 uses the "v1.5" bottleneck (stride on the 3x3 conv).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.model.encoders.base import Encoder


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """1x1 projection for the residual path when shape changes, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNetStem(nn.Module):
    """7x7 stride-2 conv, batch norm, ReLU and 3x3 stride-2 max pool: input to stride 4."""

    def __init__(self, out_ch: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_ch, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class ResNetEncoder(Encoder):
    """A ResNet split into a stride-4 stem and four residual stages (strides 4, 8, 16, 32)."""

    WIDTHS = (64, 128, 256, 512)

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.stem = ResNetStem(64)
        stages = []
        in_ch = 64
        for i, (width, depth) in enumerate(zip(self.WIDTHS, depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(w * block.expansion for w in self.WIDTHS)  # type: ignore[assignment]
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions; last batch norm of each residual branch starts at zero gain."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


def resnet18() -> ResNetEncoder:
    """ResNet-18: BasicBlock stages of depth 2, 2, 2, 2; out channels 64, 128, 256, 512."""
    return ResNetEncoder(BasicBlock, (2, 2, 2, 2))


def resnet34() -> ResNetEncoder:
    """ResNet-34: BasicBlock stages of depth 3, 4, 6, 3; out channels 64, 128, 256, 512."""
    return ResNetEncoder(BasicBlock, (3, 4, 6, 3))


def resnet50() -> ResNetEncoder:
    """ResNet-50: Bottleneck stages of depth 3, 4, 6, 3; out channels 256, 512, 1024, 2048."""
    return ResNetEncoder(Bottleneck, (3, 4, 6, 3))


__all__ = ["BasicBlock", "Bottleneck", "ResNetStem", "ResNetEncoder", "resnet18", "resnet34", "resnet50"]
