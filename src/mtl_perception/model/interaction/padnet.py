"""PAD-Net (Xu et al., CVPR 2018): intermediate predictions, then multi-modal distillation.

Shared encoder -> the task's stride-4 map (``sharing: neck``: one shared pyramid decoder, module ``neck``;
``sharing: encoder``: a pyramid decoder per task, ``decoders``) -> a task-specific branch per task (whose
features also make that task's intermediate prediction, supervised through ``aux/initial/<task>`` in
training mode) -> gated multi-modal distillation between the branches -> the final heads. No options.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
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
from mtl_perception.model.sharing import BOTH_DEPTHS, build_decoders, decode, last_shared_layer


@register("padnet")
class PADNet(MultiTaskNet):
    """Shared encoder (and neck), per-task branches with intermediate predictions, distillation, heads."""

    sharing_depths = BOTH_DEPTHS
    renamed_modules = {"decoder": "neck"}  # the neck's name in checkpoints written before the rename

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = require_multitask(config, "padnet")
        read_options(config, "padnet", {})
        channels = config.decoder_channels
        self.encoder = build_encoder(config.encoder, config.pretrained)
        self.neck, self.decoders = build_decoders(config, self.encoder.out_channels)
        self.branches = nn.ModuleDict({t: task_branch(channels) for t in self.tasks})
        self.initial_outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})
        self.distill = GatedDistillation(self.tasks, channels)
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        decoded = decode(self.neck, self.decoders, self.encoder(image), self.tasks)
        branch = {t: self.branches[t](decoded[t]) for t in self.tasks}
        distilled = self.distill(branch)
        out = {t: self.outputs[t](distilled[t], size) for t in self.tasks}
        if self.training:
            out.update(initial_predictions(self.initial_outputs, branch))
        return out

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layer every task shares (GradNorm): the neck's fusion layer, else the encoder's last stage."""
        return last_shared_layer(self.encoder, self.neck)
