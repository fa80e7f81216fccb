"""A checkpoint as an inference model plus the ModelMetadata that describes it.

Export and the PyTorch backend both describe a checkpoint through ``build_metadata`` so the facts a
consumer sees are identical whichever backend runs the network.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from mtl_perception.colorize import default_palette
from mtl_perception.config import ExperimentConfig
from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata
from mtl_perception.tasks import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def build_metadata(config: ExperimentConfig, dataset: Mapping[str, Any] | None, checkpoint_sha256: str, height: int | None = None, width: int | None = None) -> ModelMetadata:
    """The ModelMetadata of a trained network run at ``height`` x ``width`` (default: the training size).

    ``dataset`` is the checkpoint's ``dataset`` entry: class names, palette and the training camera's
    focal length at the training input size. The focal length is rescaled to the export size (the
    geometric mean of both axis ratios, exact when the aspect ratio is kept).
    """
    dataset = dict(dataset or {})
    height = height or config.data.height
    width = width or config.data.width
    num_classes = config.model.num_classes
    class_names = list(dataset.get("class_names") or [f"class_{i}" for i in range(num_classes)])
    palette = [list(map(int, c)) for c in (dataset.get("palette") or default_palette(len(class_names)).tolist())]
    if "semantic" in config.model.tasks and len(class_names) != num_classes:
        raise ValueError(f"checkpoint records {len(class_names)} class names for a {num_classes}-class model; fix the dataset entry of the checkpoint")
    focal = float(dataset.get("focal_length_px") or 0.0)
    if focal > 0:
        focal *= math.sqrt((height / config.data.height) * (width / config.data.width))
    tasks = list(config.model.tasks)
    return ModelMetadata(
        tasks=tasks,
        output_names={t: OUTPUT_NAMES[t] for t in tasks},
        class_names=class_names,
        palette=palette,
        input_height=int(height),
        input_width=int(width),
        channel_order="rgb",
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        depth_units="m",
        depth_min=float(config.model.min_depth),
        depth_max=float(config.model.max_depth),
        focal_length_px=focal,
        depth_scaling="focal" if focal > 0 else "none",
        architecture=config.model.architecture,
        encoder=config.model.encoder,
        checkpoint_sha256=checkpoint_sha256,
        config_hash=config.hash(),
        ignore_index=IGNORE_INDEX,
    ).validate()


def load_for_inference(checkpoint: str | Path, height: int | None = None, width: int | None = None, map_location: str = "cpu") -> tuple[nn.Module, ModelMetadata]:
    """Eval-mode network and its metadata from a checkpoint file (CheckpointError on a bad file)."""
    from mtl_perception.fileio import file_sha256
    from mtl_perception.training.checkpoint import model_from_checkpoint

    model, config, state = model_from_checkpoint(checkpoint, map_location=map_location)
    for name, value in (("height", height), ("width", width)):
        if value is not None and value < 32:
            raise ValueError(f"{name} must be at least 32 pixels (the encoder's output stride), got {value}")
    meta = build_metadata(config, state.get("dataset"), file_sha256(checkpoint), height, width)
    return model.eval(), meta
