"""MobileNetV3-Large backbone as a four-stage encoder (output strides 4, 8, 16, 32).

Split of the 17 feature layers of the ImageNet network (the classifier is dropped):

=========  =================  ======  ============
part       feature layers     stride  out channels
=========  =================  ======  ============
stem       0 (conv 3x3 s2), 1  2       16
stage 0    2-3                4       24
stage 1    4-6                8       40
stage 2    7-12               16      112
stage 3    13-15 + 16 (1x1)   32      960
=========  =================  ======  ============

Stage 3 ends with the 1x1 160->960 convolution so that every ImageNet feature weight is used; it is
cheap at stride 32. Only Conv2d, BatchNorm2d, ReLU, Hardswish, Hardsigmoid, mean and multiply are used,
which export to ONNX opset 17 and build in TensorRT.
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
HEAD_WIDTH = 960
# MobileNetV3-Large blocks grouped by output stride: 2 (stem), 4, 8, 16, 32.
STEM_BLOCKS = (BlockSpec(3, 16, 16, False, False, 1),)
STAGE_BLOCKS: tuple[tuple[BlockSpec, ...], ...] = (
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
)


class MobileNetV3Encoder(Encoder):
    """MobileNetV3-Large without its classifier; see the module docstring for the stage split.

    ``stem`` and every stage are Sequentials whose entries, in order, are the network's 17 feature
    layers (``feature_layers()`` lists them), which is what checkpoint key mapping relies on.
    """

    def __init__(self) -> None:
        super().__init__()
        in_ch = STEM_WIDTH
        stem: list[nn.Module] = [conv_bn_act(3, STEM_WIDTH, 3, stride=2, act=nn.Hardswish)]
        for spec in STEM_BLOCKS:
            stem.append(InvertedResidual(in_ch, spec))
            in_ch = spec.out
        self.stem = nn.Sequential(*stem)
        stages = []
        for specs in STAGE_BLOCKS:
            blocks: list[nn.Module] = []
            for spec in specs:
                blocks.append(InvertedResidual(in_ch, spec))
                in_ch = spec.out
            stages.append(nn.Sequential(*blocks))
        stages[-1].append(conv_bn_act(in_ch, HEAD_WIDTH, 1, act=nn.Hardswish))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(specs[-1].out for specs in STAGE_BLOCKS[:-1]) + (HEAD_WIDTH,)  # type: ignore[assignment]
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
    return MobileNetV3Encoder()


__all__ = ["InvertedResidual", "SqueezeExcitation", "MobileNetV3Encoder", "mobilenetv3_large", "make_divisible"]
