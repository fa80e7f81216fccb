"""Network builder: ``build_model(config)`` returns a module whose forward gives ``{task: tensor}``.

Architectures register themselves in ``ARCHITECTURES`` (``model/registry.py``) with ``@register("name")``;
this module defines ``hard`` and ``single`` and imports ``model/interaction`` (every other architecture), so
the registry is full once it is imported. Every architecture
takes a ModelConfig, returns the final task outputs at input resolution, and may add deep-supervision
outputs under keys ``aux/<name>/<task>`` in training mode only (never in eval or export).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model import interaction  # noqa: F401  (registers every interaction architecture)
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import ARCHITECTURES, MultiTaskNet, register
from mtl_perception.model.sharing import BOTH_DEPTHS, build_decoders, decode, last_shared_layer
from mtl_perception.tasks import validate_tasks

__all__ = ["ARCHITECTURES", "HardSharingNet", "MultiTaskNet", "SingleTaskNets", "build_model", "count_parameters",
           "register"]


@register("hard")
class HardSharingNet(MultiTaskNet):
    """Hard parameter sharing: one shared encoder, then per ``sharing`` either a pyramid decoder per task
    (``encoder``) or one shared pyramid decoder, the neck (``neck``); a light head per task."""

    sharing_depths = BOTH_DEPTHS
    decoder_strides = (4, 8)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = validate_tasks(config.tasks)
        self.encoder = build_encoder(config.encoder, config.pretrained)
        self.neck, self.decoders = build_decoders(config, self.encoder.out_channels)
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, config.decoder_channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        decoded = decode(self.neck, self.decoders, self.encoder(image), self.tasks)
        return {t: self.outputs[t](decoded[t], size) for t in self.tasks}

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layers every task shares (for GradNorm): the neck's fusion layer, else the encoder's last stage."""
        return last_shared_layer(self.encoder, self.neck)


@register("single")
class SingleTaskNets(MultiTaskNet):
    """The baseline: an independent network (own encoder, decoder, head) for each task."""

    decoder_strides = HardSharingNet.decoder_strides

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = validate_tasks(config.tasks)
        self.nets = nn.ModuleDict()
        for task in self.tasks:
            one = ModelConfig(**{**config.__dict__, "tasks": [task], "architecture": "hard"})
            self.nets[task] = HardSharingNet(one)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for net in self.nets.values():
            out.update(net(image))
        return out


def build_model(config: ModelConfig) -> MultiTaskNet:
    """Build the network a ModelConfig describes; ValueError listing the valid architectures (for an unknown
    one, or for a sharing depth or decoder stride the architecture does not offer)."""
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{config.architecture}'; valid: {sorted(ARCHITECTURES)}")
    architecture = ARCHITECTURES[config.architecture]
    if config.sharing not in architecture.sharing_depths:
        accepting = sorted(name for name, cls in ARCHITECTURES.items() if config.sharing in cls.sharing_depths)
        raise ValueError(f"model.sharing '{config.sharing}' does not apply to architecture '{config.architecture}'; "
                         f"architectures that accept it: {accepting}")
    if config.decoder_stride not in architecture.decoder_strides:
        accepting = sorted(name for name, cls in ARCHITECTURES.items() if config.decoder_stride in cls.decoder_strides)
        raise ValueError(f"model.decoder_stride {config.decoder_stride} does not apply to architecture '{config.architecture}'; "
                         f"architectures that accept it: {accepting}")
    return architecture(config)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
