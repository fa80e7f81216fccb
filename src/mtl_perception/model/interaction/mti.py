"""MTI-Net (Vandenhende et al., ECCV 2020): multi-scale multi-modal distillation.

Coarse to fine over the encoder's four scales (strides 32, 16, 8, 4):
1. initial task features at each scale from that scale's shared base features (``sharing: encoder``:
   a 1x1 projection of the backbone level, ``projections``; ``sharing: neck``: the level of one shared
   FPN-style feature pyramid, ``neck``), concatenated (below stride 32) with the task's features
   propagated from the coarser scale; each makes an initial prediction, supervised as
   ``aux/s<stride>/<task>`` in training mode;
2. a feature propagation module turns the initial task features of a scale into per-task features
   for the next finer scale: a shared cross-task map (all tasks concatenated) that every task filters
   with its own channel gate (squeeze-excitation), added to its own features;
3. multi-modal distillation (gated, as in PAD-Net) at every scale;
4. an aggregation head per task: the distilled features of all scales upsampled to stride 4,
   concatenated and fused, then the task output. No options.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import FeaturePyramid, conv_bn_relu
from mtl_perception.model.encoders import build_encoder
from mtl_perception.model.interaction.blocks import (ChannelGate, GatedDistillation, aux_key, read_options,
                                                     require_multitask, upsample_to)
from mtl_perception.model.heads import make_task_output
from mtl_perception.model.registry import MultiTaskNet, register
from mtl_perception.model.sharing import BOTH_DEPTHS


class FeaturePropagation(nn.Module):
    """Per-task features for the next finer scale: ``x_t + gate_t(shared(concat_s x_s))``."""

    def __init__(self, tasks: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.tasks = tasks
        self.shared = conv_bn_relu(len(tasks) * channels, channels)
        self.gates = nn.ModuleDict({t: ChannelGate(channels) for t in tasks})

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        shared = self.shared(torch.cat([features[t] for t in self.tasks], dim=1))
        return {t: features[t] + self.gates[t](shared) for t in self.tasks}


@register("mti")
class MTINet(MultiTaskNet):
    """Shared encoder (and neck), per-scale initial predictions, propagation, distillation and aggregation."""

    sharing_depths = BOTH_DEPTHS

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tasks = require_multitask(config, "mti")
        read_options(config, "mti", {})
        channels = config.decoder_channels
        self.encoder = build_encoder(config.encoder, config.pretrained)
        levels = len(self.encoder.out_channels)
        self.strides = tuple(4 * 2**i for i in range(levels))
        self.neck = FeaturePyramid(self.encoder.out_channels, channels) if config.sharing == "neck" else None
        self.projections = (None if self.neck is not None
                            else nn.ModuleList(conv_bn_relu(c, channels, 1) for c in self.encoder.out_channels))
        self.initial = nn.ModuleList(
            nn.ModuleDict({t: conv_bn_relu(channels if i == levels - 1 else 2 * channels, channels) for t in self.tasks})
            for i in range(levels)
        )
        self.initial_outputs = nn.ModuleList(
            nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks}) for _ in range(levels)
        )
        # propagations[i] carries scale i + 1 (coarser) to scale i
        self.propagations = nn.ModuleList(FeaturePropagation(self.tasks, channels) for _ in range(levels - 1))
        self.distillations = nn.ModuleList(GatedDistillation(self.tasks, channels) for _ in range(levels))
        self.aggregations = nn.ModuleDict({t: conv_bn_relu(levels * channels, channels, 1) for t in self.tasks})
        self.outputs = nn.ModuleDict({t: make_task_output(config, t, channels) for t in self.tasks})

    def _scale_bases(self, backbone: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every scale's shared base features (finest first): the neck's levels or the projected backbone."""
        if self.neck is not None:
            return self.neck(backbone)
        return [project(x) for project, x in zip(self.projections, backbone)]  # type: ignore[arg-type]

    def _initial_features(self, bases: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Initial task features of every scale (finest first), computed coarse to fine."""
        per_scale: list[dict[str, torch.Tensor]] = [{} for _ in bases]
        propagated: dict[str, torch.Tensor] | None = None
        for i in range(len(bases) - 1, -1, -1):
            base = bases[i]
            for t in self.tasks:
                x = base if propagated is None else torch.cat([base, upsample_to(propagated[t], base)], dim=1)
                per_scale[i][t] = self.initial[i][t](x)
            if i > 0:
                propagated = self.propagations[i - 1](per_scale[i])
        return per_scale

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        initial = self._initial_features(self._scale_bases(self.encoder(image)))
        distilled = [distill(features) for distill, features in zip(self.distillations, initial)]
        out: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            finest = distilled[0][t]
            stacked = torch.cat([finest] + [upsample_to(scale[t], finest) for scale in distilled[1:]], dim=1)
            out[t] = self.outputs[t](self.aggregations[t](stacked), size)
        if self.training:
            for i, features in enumerate(initial):
                for t in self.tasks:
                    x = features[t]
                    out[aux_key(f"s{self.strides[i]}", t)] = self.initial_outputs[i][t](x, (x.shape[-2], x.shape[-1]))
        return out

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layers every task shares at each scale (GradNorm): the neck's smoothing layers, else the
        per-scale projections."""
        return list((self.neck.smooth if self.neck is not None else self.projections).parameters())  # type: ignore[union-attr]
