"""Task heads: map decoder features to each task's output at input resolution."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.decoder import conv_bn_relu
from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC, task_channels


class TaskHead(nn.Module):
    """3x3 conv-bn-relu then 1x1 projection to the task's raw channels."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = conv_bn_relu(in_channels, hidden)
        self.proj = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))


class TaskActivation(nn.Module):
    """Turns raw head outputs into task outputs.

    depth: metres in (min_depth, max_depth) through a sigmoid in log space (strictly positive);
    semantic: logits unchanged; normals: L2-normalised unit vectors.
    """

    def __init__(self, task: str, min_depth: float = 0.1, max_depth: float = 10.0) -> None:
        super().__init__()
        self.task = task
        self.log_min = math.log(min_depth)
        self.log_range = math.log(max_depth) - math.log(min_depth)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.task == DEPTH:
            return torch.exp(self.log_min + self.log_range * torch.sigmoid(raw))
        if self.task == NORMALS:
            return F.normalize(raw, dim=1, eps=1e-6)
        return raw


class TaskOutput(nn.Module):
    """Head + upsampling to the input size + activation, for one task."""

    def __init__(self, task: str, in_channels: int, num_classes: int, hidden: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.head = TaskHead(in_channels, task_channels(task, num_classes), hidden)
        self.activation = TaskActivation(task, min_depth, max_depth)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        raw = F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)
        return self.activation(raw)


__all__ = ["TaskHead", "TaskActivation", "TaskOutput", "DEPTH", "SEMANTIC", "NORMALS"]


def make_task_output(config: ModelConfig, task: str, in_channels: int) -> TaskOutput:
    """The head, upsampling and activation of one task, sized from the config."""
    return TaskOutput(task, in_channels, config.num_classes, config.head_channels, config.min_depth, config.max_depth)
