"""Sharing depth (``ModelConfig.sharing``): which decoder each task reads its decoded map from (stride 4, or
``ModelConfig.decoder_stride``).

- ``encoder``: the tasks share the encoder; each task has its own ``PyramidDecoder``.
- ``neck``: the tasks also share one ``PyramidDecoder`` (the neck); each keeps only its own light layers
  on the neck's map.

``build_decoders`` makes the modules a config asks for and ``decode`` runs them; every architecture stores them
as ``neck`` / ``decoders`` (``padnet`` and ``pap`` called their neck ``decoder`` once: ``MultiTaskNet.renamed_modules``
loads such checkpoints).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import PyramidDecoder
from mtl_perception.model.encoders import Encoder
from mtl_perception.tasks import validate_tasks

BOTH_DEPTHS = ("encoder", "neck")


def build_decoders(config: ModelConfig, in_channels: tuple[int, ...]) -> tuple[PyramidDecoder | None, nn.ModuleDict | None]:
    """``(neck, None)`` for ``sharing: neck``; ``(None, {task: decoder})`` for ``sharing: encoder``."""
    if config.sharing == "neck":
        return PyramidDecoder(in_channels, config.decoder_channels, config.decoder_stride), None
    return None, nn.ModuleDict({t: PyramidDecoder(in_channels, config.decoder_channels, config.decoder_stride)
                                for t in validate_tasks(config.tasks)})


def decode(neck: PyramidDecoder | None, decoders: nn.ModuleDict | None, features: list[torch.Tensor],
           tasks: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Each task's decoded map (stride 4, or ``decoder_stride``): the neck's one map for every task, or each
    task's own decoder's."""
    if neck is not None:
        shared = neck(features)
        return {t: shared for t in tasks}
    return {t: decoders[t](features) for t in tasks}  # type: ignore[index]


def last_shared_layer(encoder: Encoder, neck: PyramidDecoder | None) -> list[nn.Parameter]:
    """The last layer every task shares (GradNorm): the neck's fusion layer, else the encoder's last stage."""
    return list((neck.fuse if neck is not None else encoder.stages[-1]).parameters())
