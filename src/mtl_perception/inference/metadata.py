"""The self-describing model file: facts the node and tools read from the exported model only.

Stored in the ONNX ``metadata_props`` under the key ``mtl_perception`` as JSON, and next to a TensorRT
engine in the engine cache. Training decides these facts; nothing downstream repeats them.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "mtl_perception"
METADATA_VERSION = 1

# Names of the graph's input and outputs (the backend contract).
INPUT_NAME = "image"
OUTPUT_NAMES = {"depth": "depth", "semantic": "semantic_logits", "normals": "normals"}


class MetadataError(ValueError):
    """The model file's metadata is missing or inconsistent."""


@dataclass
class ModelMetadata:
    """Everything a consumer needs to feed the network and interpret its outputs."""

    tasks: list[str]  # tasks the model predicts, canonical order
    output_names: dict[str, str]  # task -> graph output name
    class_names: list[str]  # semantic class names, index = class id
    palette: list[list[int]]  # RGB colour per class
    input_height: int  # network input height (pixels)
    input_width: int  # network input width (pixels)
    channel_order: str = "rgb"  # channel order the network expects
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # per-channel mean, on [0, 1] pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])  # per-channel std, on [0, 1] pixels
    depth_units: str = "m"  # units of the depth output
    depth_min: float = 0.1  # smallest depth the model reports (metres)
    depth_max: float = 10.0  # largest depth the model reports (metres)
    focal_length_px: float = 0.0  # training camera's fx at the network input size; 0 = no rescaling
    depth_scaling: str = "focal"  # how depth follows a camera with another focal length: focal | none
    architecture: str = "hard"
    encoder: str = "resnet18"
    checkpoint_sha256: str = ""  # hash of the checkpoint the model was exported from
    config_hash: str = ""  # ExperimentConfig.hash() of the training run
    ignore_index: int = 255
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        try:
            raw: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"model metadata is not valid JSON: {exc}") from None
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise MetadataError(f"model metadata lacks {missing}; re-export the model with `mtl-perception export`")
        if raw.get("version", METADATA_VERSION) > METADATA_VERSION:
            raise MetadataError(f"model metadata version {raw['version']} is newer than this package understands ({METADATA_VERSION}); update mtl_perception")
        return cls(**{k: v for k, v in raw.items() if k in names}).validate()

    def validate(self) -> "ModelMetadata":
        if self.input_height <= 0 or self.input_width <= 0:
            raise MetadataError(f"model input size {self.input_height}x{self.input_width} is invalid")
        if "semantic" in self.tasks and len(self.palette) != len(self.class_names):
            raise MetadataError(f"model has {len(self.class_names)} class names but {len(self.palette)} palette colours")
        unknown = [t for t in self.tasks if t not in OUTPUT_NAMES]
        if unknown:
            raise MetadataError(f"model metadata names unknown tasks {unknown}")
        return self
