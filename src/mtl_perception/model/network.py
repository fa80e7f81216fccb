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
from mtl_perception.model.decoder import PyramidDecoder
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import ARCHITECTURES, MultiTaskNet, register
from mtl_perception.tasks import validate_tasks

__all__ = ["ARCHITECTURES", "HardSharingNet", "MultiTaskNet", "SingleTaskNets", "build_model", "count_parameters",
           "register"]


@register("hard")
class HardSharingNet(MultiTaskNet):
    """Hard parameter sharing: one shared encoder, one pyramid decoder and head per task."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = validate_tasks(config.tasks)
        self.encoder = build_encoder(config.encoder, config.pretrained)
        self.decoders = nn.ModuleDict({t: PyramidDecoder(self.encoder.out_channels, config.decoder_channels) for t in self.tasks})
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, config.decoder_channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        features = self.encoder(image)
        return {t: self.outputs[t](self.decoders[t](features), size) for t in self.tasks}

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The encoder's last stage: the last layers every task shares (for GradNorm)."""
        return list(self.encoder.stages[-1].parameters())


@register("single")
class SingleTaskNets(MultiTaskNet):
    """The baseline: an independent network (own encoder, decoder, head) for each task."""

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
    """Build the network a ModelConfig describes; raise ValueError listing valid architectures."""
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{config.architecture}'; valid: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[config.architecture](config)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
