"""Task names, tensor conventions and constants shared by the whole package.

Conventions (every module follows them):
- Images into the network: float32 NCHW, RGB, normalised with the model's mean/std.
- ``depth``: metres, shape (N, 1, H, W), strictly positive in predictions; 0 marks invalid ground truth.
- ``semantic``: logits (N, C, H, W) in predictions; int64 class ids (N, H, W) in ground truth with
  ``IGNORE_INDEX`` for unlabelled pixels.
- ``normals``: unit vectors (N, 3, H, W) in the camera optical frame (REP-103: x right, y down,
  z forward); all-zero vectors mark invalid ground truth.
"""
from __future__ import annotations

DEPTH = "depth"
SEMANTIC = "semantic"
NORMALS = "normals"
ALL_TASKS: tuple[str, ...] = (DEPTH, SEMANTIC, NORMALS)

IGNORE_INDEX = 255

# Output channels of each task head; semantic takes the class count from the config.
TASK_CHANNELS_FIXED = {DEPTH: 1, NORMALS: 3}

# Prefix of deep-supervision outputs (e.g. "aux/s8/depth"); present only in training mode.
AUX_PREFIX = "aux/"

# ImageNet statistics, the default input normalisation (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def validate_tasks(tasks: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return the tasks in canonical order; raise ValueError naming the valid tasks on a bad list."""
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {list(ALL_TASKS)}, got {list(tasks)}")
    return tuple(t for t in ALL_TASKS if t in tasks)


def task_channels(task: str, num_classes: int) -> int:
    """Number of output channels of a task head."""
    return num_classes if task == SEMANTIC else TASK_CHANNELS_FIXED[task]
