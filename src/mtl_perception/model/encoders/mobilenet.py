"""MobileNetV3-Large and -Small backbones as four-stage encoders (output strides 4, 8, 16, 32).

Split of the feature layers of the ImageNet networks (the classifier is dropped); torchvision numbers
them ``features.0`` .. ``features.16`` (Large) and ``features.0`` .. ``features.12`` (Small):

=========  ===============  ===============  ======  ====================
part       Large layers     Small layers     stride  out channels (L / S)
=========  ===============  ===============  ======  ====================
stem       0 (conv s2), 1   0 (conv s2)      2       16 / 16
stage 0    2-3              1                4       24 / 16
stage 1    4-6              2-3              8       40 / 24
stage 2    7-12             4-8              16      112 / 48
stage 3    13-15 + 16 (1x1) 9-11 + 12 (1x1)  32      960 / 576
=========  ===============  ===============  ======  ====================

Stage 3 ends with the final 1x1 convolution so that every ImageNet feature weight is used; it is cheap at
stride 32. Only Conv2d, BatchNorm2d, ReLU, Hardswish, Hardsigmoid, mean and multiply are used, which export
to ONNX opset 17 and build in TensorRT. Block tables: Howard et al. 2019, "Searching for MobileNetV3",
tables 1 and 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtl_perception.model.encoders.base import Encoder

BN_EPS = 1e-3  # the value the ImageNet MobileNetV3 checkpoints were trained with
BN_MOMENTUM = 0.01


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90 % of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = None) -> nn.Sequential:
    """Conv (no bias), batch norm and an optional activation, as a Sequential indexed 0, 1, 2."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gating: global mean, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, multiply."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.gate(self.fc2(self.relu(self.fc1(scale))))
        return x * scale


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: kernel, expanded width, output width, SE, hardswish, stride."""

    kernel: int
    expanded: int
    out: int
    se: bool
    hardswish: bool
    stride: int


class InvertedResidual(nn.Module):
    """Optional 1x1 expansion, depthwise conv, optional squeeze-excitation, 1x1 linear projection.

    ``block`` is a Sequential of those parts; ``roles`` names each entry ("expand", "depthwise", "se",
    "project") so weight loaders can map other checkpoint layouts onto it.
    """

    def __init__(self, in_ch: int, spec: BlockSpec) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Hardswish if spec.hardswish else nn.ReLU
        parts: list[nn.Module] = []
        roles: list[str] = []
        if spec.expanded != in_ch:
            parts.append(conv_bn_act(in_ch, spec.expanded, 1, act=act))
            roles.append("expand")
        parts.append(conv_bn_act(spec.expanded, spec.expanded, spec.kernel, spec.stride, groups=spec.expanded, act=act))
        roles.append("depthwise")
        if spec.se:
            parts.append(SqueezeExcitation(spec.expanded, make_divisible(spec.expanded // 4)))
            roles.append("se")
        parts.append(conv_bn_act(spec.expanded, spec.out, 1))
        roles.append("project")
        self.block = nn.Sequential(*parts)
        self.roles: tuple[str, ...] = tuple(roles)
        self.use_residual = spec.stride == 1 and in_ch == spec.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


STEM_WIDTH = 16


@dataclass(frozen=True)
class MobileNetV3Spec:
    """One MobileNetV3 variant: blocks after the stem conv grouped by output stride, final 1x1 width.

    ``timm_groups``: how timm groups feature layers 1.. into ``blocks.0``, ``blocks.1``, ... (weight loading).
    """

    stem_blocks: tuple[BlockSpec, ...]  # stride 2
    stages: tuple[tuple[BlockSpec, ...], ...]  # strides 4, 8, 16, 32
    head_width: int
    timm_groups: tuple[int, ...]


LARGE = MobileNetV3Spec(
    stem_blocks=(BlockSpec(3, 16, 16, False, False, 1),),
    stages=(
        (BlockSpec(3, 64, 24, False, False, 2), BlockSpec(3, 72, 24, False, False, 1)),
        (BlockSpec(5, 72, 40, True, False, 2), BlockSpec(5, 120, 40, True, False, 1), BlockSpec(5, 120, 40, True, False, 1)),
        (
            BlockSpec(3, 240, 80, False, True, 2),
            BlockSpec(3, 200, 80, False, True, 1),
            BlockSpec(3, 184, 80, False, True, 1),
            BlockSpec(3, 184, 80, False, True, 1),
            BlockSpec(3, 480, 112, True, True, 1),
            BlockSpec(3, 672, 112, True, True, 1),
        ),
        (BlockSpec(5, 672, 160, True, True, 2), BlockSpec(5, 960, 160, True, True, 1), BlockSpec(5, 960, 160, True, True, 1)),
    ),
    head_width=960,
    timm_groups=(1, 2, 3, 4, 2, 3, 1),
)

SMALL = MobileNetV3Spec(
    stem_blocks=(),
    stages=(
        (BlockSpec(3, 16, 16, True, False, 2),),
        (BlockSpec(3, 72, 24, False, False, 2), BlockSpec(3, 88, 24, False, False, 1)),
        (
            BlockSpec(5, 96, 40, True, True, 2),
            BlockSpec(5, 240, 40, True, True, 1),
            BlockSpec(5, 240, 40, True, True, 1),
            BlockSpec(5, 120, 48, True, True, 1),
            BlockSpec(5, 144, 48, True, True, 1),
        ),
        (BlockSpec(5, 288, 96, True, True, 2), BlockSpec(5, 576, 96, True, True, 1), BlockSpec(5, 576, 96, True, True, 1)),
    ),
    head_width=576,
    timm_groups=(1, 2, 3, 2, 3, 1),
)


def _inverted_residuals(in_ch: int, blocks: tuple[BlockSpec, ...]) -> tuple[list[nn.Module], int]:
    """The blocks in order, each fed by the one before; returns them and the last one's width."""
    layers: list[nn.Module] = []
    for block in blocks:
        layers.append(InvertedResidual(in_ch, block))
        in_ch = block.out
    return layers, in_ch


class MobileNetV3Encoder(Encoder):
    """A MobileNetV3 (``spec``) without its classifier; see the module docstring for the stage split.

    ``stem`` and every stage are Sequentials whose entries, in order, are the network's feature layers
    (17 for Large, 13 for Small; ``feature_layers()`` lists them), which is what checkpoint key mapping relies on.
    """

    def __init__(self, spec: MobileNetV3Spec = LARGE) -> None:
        super().__init__()
        self.spec = spec
        stem_blocks, in_ch = _inverted_residuals(STEM_WIDTH, spec.stem_blocks)
        self.stem = nn.Sequential(conv_bn_act(3, STEM_WIDTH, 3, stride=2, act=nn.Hardswish), *stem_blocks)
        stages = []
        for blocks in spec.stages:
            layers, in_ch = _inverted_residuals(in_ch, blocks)
            stages.append(nn.Sequential(*layers))
        stages[-1].append(conv_bn_act(in_ch, spec.head_width, 1, act=nn.Hardswish))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(blocks[-1].out for blocks in spec.stages[:-1]) + (spec.head_width,)  # type: ignore[assignment]
        self._init_weights()

    def feature_layers(self) -> list[tuple[str, nn.Module]]:
        """(our module path, module) of the 17 feature layers, in network order."""
        layers = [(f"stem.{i}", m) for i, m in enumerate(self.stem)]
        for s, stage in enumerate(self.stages):
            layers += [(f"stages.{s}.{i}", m) for i, m in enumerate(stage)]
        return layers

    def _init_weights(self) -> None:
        """He-normal convolutions with zero bias; batch norms at identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def mobilenetv3_large() -> MobileNetV3Encoder:
    """MobileNetV3-Large (width 1.0); out channels 24, 40, 112, 960 at strides 4, 8, 16, 32."""
    return MobileNetV3Encoder(LARGE)


def mobilenetv3_small() -> MobileNetV3Encoder:
    """MobileNetV3-Small (width 1.0); out channels 16, 24, 48, 576 at strides 4, 8, 16, 32."""
    return MobileNetV3Encoder(SMALL)


__all__ = ["InvertedResidual", "SqueezeExcitation", "MobileNetV3Encoder", "MobileNetV3Spec", "LARGE", "SMALL",
           "mobilenetv3_large", "mobilenetv3_small", "make_divisible"]
