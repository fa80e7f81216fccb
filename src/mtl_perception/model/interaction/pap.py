"""PAP-Net (Zhang et al., CVPR 2019): pattern-affinitive propagation across tasks.

Shared encoder -> the task's stride-4 map (``sharing: neck``: one shared pyramid decoder, module
``neck``; ``sharing: encoder``: a pyramid decoder per task, ``decoders``) -> a branch per task (whose
features make the initial prediction, supervised as ``aux/initial/<task>`` in training mode) -> at
stride ``pap_stride``:
1. a pixel-affinity matrix per task from that task's features (softmax over scaled dot products of
   a learned embedding, so each row sums to 1);
2. cross-task propagation: each task's affinity is a learned convex combination (softmax over a
   learned T x T table) of all tasks' affinities;
3. task-specific propagation: the task's pooled features are diffused ``pap_iterations`` times with
   its combined affinity;
then the diffused features are upsampled, fused with the branch features and fed to the final heads.

Options (``model.options``):
- ``pap_stride`` (16): output stride of the affinity maps, 8, 16 or 32. Memory and compute of the
  affinities grow with (H*W / stride^2)^2: at 240x320, stride 16 gives 300x300 matrices per task and
  image, stride 8 gives 1200x1200 (16x more).
- ``pap_iterations`` (2): diffusion steps of the task-specific propagation (>= 1).
- ``pap_embed_channels`` (32): width of the affinity embedding.

Only matmul, softmax and fixed reshapes are used, so the graph exports to ONNX with static shapes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import conv_bn_relu
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.interaction.blocks import (
    initial_predictions,
    read_options,
    require_multitask,
    task_branch,
    upsample_to,
)
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import MultiTaskNet, register
from mtl_perception.model.sharing import BOTH_DEPTHS, build_decoders, decode, last_shared_layer

DEFAULTS: dict[str, Any] = {"pap_stride": 16, "pap_iterations": 2, "pap_embed_channels": 32}
VALID_STRIDES = (8, 16, 32)
FEATURE_STRIDE = 4  # stride of the decoders' output


class AffinityPropagation(nn.Module):
    """Per-task affinities, their learned cross-task combination, and iterative diffusion."""

    def __init__(self, tasks: tuple[str, ...], channels: int, embed_channels: int, iterations: int) -> None:
        super().__init__()
        self.tasks = tasks
        self.iterations = iterations
        self.scale = embed_channels**-0.5
        self.embeddings = nn.ModuleDict({t: nn.Conv2d(channels, embed_channels, 1) for t in tasks})
        # mix_logits[t, s]: how much task t's propagation uses task s's affinity (softmax over s)
        self.mix_logits = nn.Parameter(torch.zeros(len(tasks), len(tasks)))

    def affinity(self, task: str, x: torch.Tensor) -> torch.Tensor:
        """Row-stochastic (N, HW, HW) affinity of one task's (N, C, H, W) features."""
        embedded = self.embeddings[task](x).flatten(2)  # N, E, HW
        logits = torch.matmul(embedded.transpose(1, 2), embedded) * self.scale
        return torch.softmax(logits, dim=-1)

    def mixing(self) -> torch.Tensor:
        """(T, T) convex weights: row t combines the tasks' affinities for task t."""
        return torch.softmax(self.mix_logits, dim=1)

    def combined_affinities(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each task's combined affinity: sum_s mixing[t, s] * affinity_s."""
        affinities = [self.affinity(t, features[t]) for t in self.tasks]
        mixing = self.mixing()
        combined = {}
        for ti, t in enumerate(self.tasks):
            total = affinities[0] * mixing[ti, 0]
            for si in range(1, len(self.tasks)):
                total = total + affinities[si] * mixing[ti, si]
            combined[t] = total
        return combined

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        combined = self.combined_affinities(features)
        out = {}
        for t in self.tasks:
            n, c, h, w = features[t].shape
            z = features[t].flatten(2).transpose(1, 2)  # N, HW, C
            for _ in range(self.iterations):
                z = torch.matmul(combined[t], z)
            out[t] = z.transpose(1, 2).reshape(n, c, h, w)
        return out


@register("pap")
class PAPNet(MultiTaskNet):
    """Shared encoder (and neck), per-task branches, affinity propagation at reduced resolution, heads."""

    sharing_depths = BOTH_DEPTHS
    renamed_modules = {"decoder": "neck"}  # the neck's name in checkpoints written before the rename

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = require_multitask(config, "pap")
        options = read_options(config, "pap", DEFAULTS)
        if options["pap_stride"] not in VALID_STRIDES:
            raise ValueError(f"model.options.pap_stride must be one of {list(VALID_STRIDES)}, got {options['pap_stride']}")
        if options["pap_iterations"] < 1 or options["pap_embed_channels"] < 1:
            raise ValueError("model.options.pap_iterations and pap_embed_channels must be at least 1")
        self.pool = options["pap_stride"] // FEATURE_STRIDE
        channels = config.decoder_channels
        self.encoder = build_encoder(config.encoder, config.pretrained)
        self.neck, self.decoders = build_decoders(config, self.encoder.out_channels)
        self.branches = nn.ModuleDict({t: task_branch(channels) for t in self.tasks})
        self.initial_outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})
        self.propagation = AffinityPropagation(
            self.tasks, channels, options["pap_embed_channels"], options["pap_iterations"]
        )
        self.fusions = nn.ModuleDict({t: conv_bn_relu(2 * channels, channels, 1) for t in self.tasks})
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        decoded = decode(self.neck, self.decoders, self.encoder(image), self.tasks)
        branch = {t: self.branches[t](decoded[t]) for t in self.tasks}
        pooled = {t: F.avg_pool2d(x, self.pool) for t, x in branch.items()}
        diffused = self.propagation(pooled)
        out = {}
        for t in self.tasks:
            fused = self.fusions[t](torch.cat([branch[t], upsample_to(diffused[t], branch[t])], dim=1))
            out[t] = self.outputs[t](fused, size)
        if self.training:
            out.update(initial_predictions(self.initial_outputs, branch))
        return out

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layer every task shares (GradNorm): the neck's fusion layer, else the encoder's last stage."""
        return last_shared_layer(self.encoder, self.neck)
