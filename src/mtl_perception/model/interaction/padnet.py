"""PAD-Net (Xu et al., CVPR 2018): intermediate predictions, then multi-modal distillation.

Shared encoder and pyramid decoder -> a task-specific branch per task (whose features also make that
task's intermediate prediction, supervised through ``aux/initial/<task>`` in training mode) -> gated
multi-modal distillation between the branches -> the final heads. No options.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import PyramidDecoder
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.interaction.blocks import (
    GatedDistillation,
    initial_predictions,
    read_options,
    require_multitask,
    task_branch,
)
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import MultiTaskNet, register


@register("padnet")
class PADNet(MultiTaskNet):
    """Shared encoder-decoder, per-task branches with intermediate predictions, distillation, heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = require_multitask(config, "padnet")
        read_options(config, "padnet", {})
        channels = config.decoder_channels
        self.encoder = build_encoder(config.encoder, config.pretrained)
        self.decoder = PyramidDecoder(self.encoder.out_channels, channels)
        self.branches = nn.ModuleDict({t: task_branch(channels) for t in self.tasks})
        self.initial_outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})
        self.distill = GatedDistillation(self.tasks, channels)
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        shared = self.decoder(self.encoder(image))
        branch = {t: self.branches[t](shared) for t in self.tasks}
        distilled = self.distill(branch)
        out = {t: self.outputs[t](distilled[t], size) for t in self.tasks}
        if self.training:
            out.update(initial_predictions(self.initial_outputs, branch, shared))
        return out

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The shared decoder's fusion layer: the last layer every task shares (GradNorm)."""
        return list(self.decoder.fuse.parameters())
